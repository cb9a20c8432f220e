"""State is bounded, and damaged member and exit records stay one line (issue 12).

Finished foreground members leave no file; detached ones are kept up to the
last 100 ended; a damaged member or exit record is named, never a traceback.
"""

import os
import time
from pathlib import Path

import pytest
from conftest import PodEnv

MAX_ENDED = 100  # nspod.memberstate.MAX_ENDED


def files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.exists() else []


def test_foreground_members_leave_no_files(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "--memory", "16M", "p")
    pdir = pod_env.root / "pods" / "p"
    for i in range(60):
        assert pod_env.run("join", "p", "--", "sh", "-c", f"exit {i % 3}").returncode == i % 3
    assert files(pdir / "members") == []
    assert files(pdir / "exits") == []
    assert pod_env.run("ps", "p", check=True).stdout.count("\n") == 1  # the header alone


def test_detached_members_kept_up_to_the_last_100_ended(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pdir = pod_env.root / "pods" / "p"
    pod_env.run("join", "-d", "--name", "long", "p", "--", "sleep", "100", check=True)
    for i in range(MAX_ENDED + 15):
        pod_env.run("join", "-d", "--name", f"m{i}", "p", "--", "true", check=True)
    time.sleep(0.3)
    pod_env.run("join", "-d", "--name", "last", "p", "--", "true", check=True)
    names = {p.stem for p in (pdir / "members").glob("*.json")}
    # the running one, the newest 100 ended, the one just started
    assert "long" in names and "last" in names
    assert len(names) <= MAX_ENDED + 2
    assert "m0" not in names and f"m{MAX_ENDED + 14}" in names
    logs = {p.name for p in (pdir / "logs").iterdir()}
    assert "m0.log" not in logs
    exits = files(pdir / "exits")
    assert len(exits) <= 2 * (MAX_ENDED + 2)  # member and logger of each kept one
    ps = pod_env.run("ps", "p", check=True).stdout.splitlines()
    assert len(ps) - 1 == len(names)


DAMAGE = {
    "truncated": '{"name": "m", "argv": ["tr',
    "empty-list": "[]",
    "object": "{}",
    "wrong types": '{"name": "m", "argv": "true", "host_pid": "1", "pod_pid": [], '
                   '"started": "x"}',
    "garbage": "\x00\xff garbage",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_member_record_is_one_line(pod_env: PodEnv, damage: str) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "-d", "--name", "m", "p", "--", "true", check=True)
    record = pod_env.root / "pods" / "p" / "members" / "m.json"
    record.write_bytes(DAMAGE[damage].encode("latin-1"))
    for args in (("ps", "p"), ("logs", "p", "m"), ("kill", "p", "m")):
        r = pod_env.run(*args)
        assert r.returncode == 125, args
        assert r.stderr.startswith(f"nspod: damaged record {record}: "), args
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    # the pod and its other members go on
    assert pod_env.run("join", "p", "--", "true").returncode == 0
    pod_env.run("join", "-d", "--name", "m2", "p", "--", "true", check=True)
    assert pod_env.run("rm", "-f", "p").returncode == 0


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x00\xff", b"1 2 3 4 5"])
def test_damaged_exit_record_is_no_traceback(pod_env: PodEnv, content: bytes) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "-d", "--name", "m", "p", "--", "true", check=True)
    time.sleep(0.3)
    exits = pod_env.root / "pods" / "p" / "exits"
    for rec in exits.iterdir():
        rec.write_bytes(content)
    for args in (("ps", "p"), ("join", "--name", "m3", "p", "--", "true"), ("ls",)):
        r = pod_env.run(*args)
        assert "Traceback" not in r.stderr and r.stderr.count("\n") <= 1, (args, r.stderr)
        assert r.returncode in (0, 125), args
    assert os.path.exists(exits)
