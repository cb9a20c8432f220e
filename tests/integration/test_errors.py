"""What the user sees when things are broken: one line, the right code, no traceback."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NSPOD, PodEnv


def nspod_sh(env: PodEnv, redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """nspod ARGS run by sh with REDIRECT applied (e.g. '>&-' closes stdout)."""
    return subprocess.run(["sh", "-c", f'"$@" {redirect}', "sh", str(NSPOD), *args],
                          env=env.env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("ls",), ("ls", "--json"),
                                  ("create", "--help")])
def test_closed_stdout_is_no_crash(pod_env: PodEnv, args: tuple[str, ...]) -> None:
    r = nspod_sh(pod_env, ">&-", *args)
    assert (r.returncode, r.stderr) == (0, "")


def test_verbs_with_closed_stdio_work_and_say_nothing(pod_env: PodEnv) -> None:
    r = nspod_sh(pod_env, ">&-", "create", "--net", "none", "p")
    pod_env.pods_seen.add("p")
    assert (r.returncode, r.stderr) == (0, "")
    assert pod_env.run("ls", "-q", check=True).stdout == "p\n"
    r = nspod_sh(pod_env, "<&- >&- 2>&-", "join", "p", "--", "sh", "-c", "echo out; echo err >&2")
    assert r.returncode == 0
    r = nspod_sh(pod_env, ">&- 2>&-", "join", "p", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    r = nspod_sh(pod_env, ">&- 2>&-", "inspect", "nosuch")
    assert r.returncode == 125  # the error, not a crash in printing it
    r = nspod_sh(pod_env, ">&-", "inspect", "nosuch")
    assert (r.returncode, r.stderr) == (125, 'nspod: pod "nosuch": no such pod\n')
    r = nspod_sh(pod_env, ">&-", "rm", "-f", "p")
    assert (r.returncode, r.stderr) == (0, "")
    assert pod_env.run("ls", "-q", check=True).stdout == ""


def test_full_stdout_says_so(pod_env: PodEnv) -> None:
    r = nspod_sh(pod_env, ">/dev/full", "--version")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "no space left on device" in r.stderr.lower()


def test_pod_record_that_is_a_directory(pod_env: PodEnv) -> None:
    """Every verb says which file is damaged, in one line, and how to get out."""
    pod_env.create("--net", "none", "p")
    record = pod_env.root / "pods" / "p" / "pod.json"
    saved = record.read_text()
    record.unlink()
    record.mkdir()
    try:
        line = f'nspod: pod "p": damaged record {record}: is a directory: run nspod rm -f p\n'
        for args in (("ls",), ("inspect", "p"), ("join", "p", "--", "true"), ("ps", "p"),
                     ("stop", "p"), ("rm", "p"), ("kill", "p")):
            r = pod_env.run(*args)
            assert (r.returncode, r.stderr) == (125, line), args
    finally:
        record.rmdir()
        record.write_text(saved)
    # the pod survived all of it
    assert pod_env.run("join", "p", "--", "true").returncode == 0


def test_damaged_member_record(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "--name", "m", "p", "--", "true", check=True)
    record = pod_env.root / "pods" / "p" / "members" / "m.json"
    record.write_text('{"name": "m", "argv": "true"}')
    r = pod_env.run("ps", "p")
    assert r.returncode == 125
    assert r.stderr.startswith(f"nspod: damaged record {record}: ")
    # a join beside it is not disturbed
    assert pod_env.run("join", "p", "--", "true").returncode == 0
    shutil.rmtree(record.parent)
    Path(record.parent).mkdir()


def test_pause_that_cannot_exec_says_why(pod_env: PodEnv) -> None:
    """pause's own exec error reaches the user, and the create leaves nothing."""
    import nspod.pausectl  # the installed package's pause

    pause = Path(nspod.pausectl.PAUSE_BIN)
    mode = pause.stat().st_mode
    pause.chmod(0o644)
    try:
        r = pod_env.run("create", "--net", "none", "p")
    finally:
        pause.chmod(mode)
    assert (r.returncode, r.stderr) == (125, "nspod: start pause: exec pause: permission denied\n")
    assert list((pod_env.root / "pods").iterdir()) == []


def test_read_only_state_directory(pod_env: PodEnv) -> None:
    """A state root on a read-only filesystem: the verbs that write say so in
    one line, the ones that read work, and nothing is made anywhere else."""
    ro = pod_env.root / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)], check=True)
    env = dict(pod_env.env, NSPOD_ROOT=str(ro))
    try:
        for args, verb in ((("create", "g"), "create"),
                           (("create", "--net", "none", "g"), "create"),
                           (("network", "create", "q"), "network create"), (("gc",), "gc")):
            r = subprocess.run([str(NSPOD), *args], env=env, capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 125, args
            assert r.stderr.startswith(f"nspod: {verb}: {ro}"), r.stderr
            assert r.stderr.endswith(": read-only file system\n") and r.stderr.count("\n") == 1
        for args in (("ls",), ("network", "ls")):
            r = subprocess.run([str(NSPOD), *args], env=env, capture_output=True, text=True,
                               timeout=30)
            assert (r.returncode, r.stderr) == (0, ""), args
        assert not Path("/sys/class/net", pod_env.bridge).exists()
        assert not Path(pod_env.env["NSPOD_STORAGE"]).exists() or \
            list(Path(pod_env.env["NSPOD_STORAGE"]).iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_full_state_directory(pod_env: PodEnv) -> None:
    """ENOSPC in the state root: one line naming the verb and the file, nothing half made."""
    full = pod_env.root / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
    env = dict(pod_env.env, NSPOD_ROOT=str(full))

    def nspod(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(NSPOD), *args], env=env, capture_output=True, text=True,
                              timeout=30)

    filler = full / "filler"
    try:
        assert nspod("create", "--net", "none", "f").returncode == 0
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        for args, verb in ((("join", "f", "--", "sh", "-c", "exit 3"), "join"),
                           (("join", "-d", "f", "--", "true"), "join"),
                           (("create", "--net", "none", "g"), "create")):
            r = nspod(*args)
            assert r.returncode == 125, args
            assert r.stderr.startswith(f"nspod: {verb}: {full}/pods/"), args
            assert r.stderr.endswith(": no space left on device\n"), args
            assert r.stderr.count("\n") == 1, args
        assert nspod("stop", "f").returncode == 0
        r = nspod("start", "f")
        assert (r.returncode, r.stderr) == (
            125, f"nspod: start: {full}/pods/f/pod.json: no space left on device\n")
        filler.unlink()
        assert sorted(p.name for p in (full / "pods").iterdir()) == ["f"]
        assert sorted(p.name for p in (full / "pods" / "f").iterdir()
                      if not p.is_dir()) == ["pause.log", "pod.json"]  # no pause.pid left
        assert nspod("start", "f").returncode == 0
        assert nspod("join", "f", "--", "sh", "-c", "exit 3").returncode == 3
    finally:
        if filler.exists():
            filler.unlink()
        nspod("rm", "-f", "f")
        subprocess.run(["umount", str(full)], check=True)


def test_rm_of_several_pods_goes_on_past_one_that_fails(pod_env: PodEnv) -> None:
    for name in ("a", "b"):
        pod_env.create("--net", "none", name)
    r = pod_env.run("rm", "-f", "a", "nosuch", "b")
    assert r.returncode == 125
    assert r.stdout == "a\nb\n" and r.stderr == 'nspod: pod "nosuch": no such pod\n'
    assert pod_env.run("ls", "-q").stdout == ""


def test_empty_command_is_a_usage_error(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    r = pod_env.run("join", "p", "--", "")
    assert (r.returncode, r.stderr) == (2, 'nspod: join: command "": must not be empty\n')


def test_a_failed_join_leaves_no_record(pod_env: PodEnv, tmp_path: Path) -> None:
    """A join whose member never ran is not listed, and leaves no record or log behind."""
    pod_env.create("--net", "none", "p")
    pdir = pod_env.root / "pods" / "p"
    for args, code in ((("--name", "r", "--rootfs", str(tmp_path / "none")), 125),
                       (("-d", "--name", "d", "--rootfs", str(tmp_path / "none")), 125),
                       (("--name", "w", "-w", "/no/such/dir"), 125),
                       (("-d", "--name", "x"), 127)):
        cmd = ["no-such-command"] if code == 127 else ["true"]
        r = pod_env.run("join", *args, "p", "--", *cmd)
        assert r.returncode == code and r.stderr.count("\n") == 1, (args, r)
    assert json.loads(pod_env.run("ps", "--json", "p", check=True).stdout) == []
    # (.host-root stays: a process on the host's files did run in the pod, mixing.py)
    assert [f for f in os.listdir(pdir / "members") if not f.startswith(".")] == []
    assert sorted(os.listdir(pdir / "logs")) == []
    # the names were never taken
    pod_env.run("join", "-d", "--name", "d", "p", "--", "true", check=True)
    assert [m["name"] for m in json.loads(pod_env.run("ps", "--json", "p").stdout)] == ["d"]
