"""The README's walkthrough, run from the README itself, so the two cannot drift.

Blocks fenced as ```sh tested are run in order, each by one bash as if pasted
into a root shell, against the test's own state root, bridge, subnet, table,
a free high port and a private /tmp. In a block, a command is its lines up to
the first `#` line or blank line; the `#` lines right under it are what it
prints (stdout), compared after the figures that change from run to run are
set aside: times, timestamps, generated member names, and in nspod's tables
(a header starting with NAME) the PID, AGE, CPU and MEM % columns and the
memory usage (not its limit). `...` in
an expected line matches anything. `#` lines after a blank line are comments.
Every command must succeed.
"""

import re
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import NSPOD, REPO, PodEnv

pytestmark = pytest.mark.root

README = REPO / "README.md"
VARIABLE_COLUMNS = {"PID", "AGE", "CPU %", "MEM %", "CPU TIME"}
NORMAL = (  # (pattern, what it stands for): values that differ from run to run
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<timestamp>"),
    (re.compile(r"\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d"), "<date>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<time>"),
    (re.compile(r"\b([a-z][a-z0-9_.]*)-[0-9a-f]{6}\b"), r"\1-<id>"),  # generated names
)


class Step:
    def __init__(self, command: list[str], expected: list[str]) -> None:
        self.command = command
        self.expected = expected


def sh_blocks(text: str) -> list[list[str]]:
    """The lines of each block fenced ```sh tested, in order."""
    blocks, current = [], None
    for line in text.splitlines():
        if current is None:
            if line.strip() == "```sh tested":
                current = []
        elif line.strip() == "```":
            blocks.append(current)
            current = None
        else:
            current.append(line)
    assert current is None, "README: a ```sh tested block is not closed"
    return blocks


def steps(block: list[str]) -> list[Step]:
    out: list[Step] = []
    after_command = False
    for line in block:
        if not line.strip():
            after_command = False
        elif line.startswith("#"):
            if after_command:
                out[-1].expected.append(line[2:] if line.startswith("# ") else line[1:])
        elif after_command and out[-1].expected:
            out.append(Step([line], []))
        elif after_command:
            out[-1].command.append(line)  # continued: a heredoc, a second line
        else:
            out.append(Step([line], []))
            after_command = True
    return out


def normal(line: str) -> str:
    for pattern, sub in NORMAL:
        line = pattern.sub(sub, line)
    return line.rstrip()


def matches(expected: str, actual: str) -> bool:
    """expected, with `...` matching anything (whole words when spaced) and any run
    of spaces any other."""
    pattern = ""
    for i, piece in enumerate(re.split(r"(\s*\.\.\.\s*)", expected.strip())):
        if i % 2:  # a `...`
            spaced = piece.startswith(" ") and piece.endswith(" ")
            pattern += r"\s(?:.*\s)?" if spaced else ".*"
        else:
            pattern += r"\s+".join(re.escape(w) for w in piece.split())
    return re.fullmatch(pattern, actual.strip()) is not None


def compare(expected: list[str], actual: list[str]) -> str | None:
    """Why actual is not what the README shows, or None."""
    expected = [normal(x) for x in expected]
    actual = [normal(x) for x in actual]
    if len(expected) != len(actual):
        return f"{len(actual)} lines, the README shows {len(expected)}"
    if expected and expected[0].startswith("NAME "):  # one of nspod's tables
        head = re.split(r"\s{2,}", actual[0])
        if re.split(r"\s{2,}", expected[0]) != head:
            return f"header {actual[0]!r}"
        for want, got in zip(expected[1:], actual[1:], strict=True):
            w, g = re.split(r"\s{2,}", want), re.split(r"\s{2,}", got)
            if len(w) != len(head) or len(g) != len(head):
                return f"row {got!r} (README: {want!r})"
            for col, a, b in zip(head, w, g, strict=True):
                if col == "MEM USAGE / LIMIT":  # the usage changes, the limit does not
                    a, b = a.rpartition("/")[2], b.rpartition("/")[2]
                if col not in VARIABLE_COLUMNS and not matches(a, b):
                    return f"{col} {b!r} (README: {a!r}) in {got!r}"
        return None
    for want, got in zip(expected, actual, strict=True):
        if not matches(want, got):
            return f"{got!r} (README: {want!r})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def test_readme_parser_reads_steps() -> None:
    block = ["a", "# out", "", "# a comment", "b <<'EOF'", "x", "EOF", "c", "# 1", "#", "d"]
    got = [(s.command, s.expected) for s in steps(block)]
    assert got == [(["a"], ["out"]), (["b <<'EOF'", "x", "EOF", "c"], ["1", ""]), (["d"], [])]
    assert matches("root  1 ... /pause", "root           1  0.0  0.0    184    24 ?  Ss /pause")
    assert not matches("root  1 ... /pause", "root  12 ... /pause")
    assert compare(["NAME  PID  STATE", "a  1  running"], ["NAME  PID  STATE", "a  9  running"]) \
        is None
    assert compare(["NAME  PID  STATE", "a  1  running"], ["NAME  PID  STATE", "a  9  exited"])


def test_the_readme_walkthrough_runs_as_written(pod_env: PodEnv, tmp_path: Path) -> None:
    blocks = sh_blocks(README.read_text())
    assert len(blocks) >= 3, "README: the walkthrough's ```sh tested blocks are gone"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nspod").symlink_to(NSPOD)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    prefix = pod_env.subnet.rsplit(".", 1)[0] + "."
    subs = {"8080": str(free_port()), "10.88.0.": prefix, "/tmp/": f"{scratch}/"}
    env = dict(pod_env.env, PATH=f"{bin_dir}:{pod_env.env['PATH']}")
    ran = 0
    for block in blocks:
        text = "\n".join(block)
        for old, new in subs.items():
            text = text.replace(old, new)
        todo = steps(text.splitlines())
        # the whole block in one bash, as pasted, a marker with the status after each step
        # (stderr with stdout, as the terminal shows them)
        script = "".join("{\n" + "\n".join(s.command) + f"\n}} 2>&1\necho \"@@ {i} $?\"\n"
                         for i, s in enumerate(todo))
        r = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=240)
        outputs = re.split(r"^@@ (\d+) (\d+)\n", r.stdout, flags=re.M)
        assert len(outputs) == 3 * len(todo) + 1, (r.stdout, r.stderr)
        for i, step in enumerate(todo):
            printed, index, status = outputs[3 * i], outputs[3 * i + 1], outputs[3 * i + 2]
            assert (int(index), int(status)) == (i, 0), (step.command, printed, r.stderr)
            if step.expected:
                why = compare(step.expected, printed.splitlines())
                assert why is None, f"README step {step.command[0]!r}: {why}\n{printed}"
            ran += 1
    assert ran >= 10
