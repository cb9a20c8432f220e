"""Pod limits (one cgroup per pod) and `nspod stats`, on this machine's cgroup layout."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import NSPOD, PodEnv, pod_cgroups

pytestmark = pytest.mark.root

MiB = 1 << 20


def stats(e: PodEnv, *pods: str) -> list[dict[str, object]]:
    r = e.run("stats", "--no-stream", "--json", *pods, check=True)
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def wait_pids(e: PodEnv, pod: str, n: int, timeout: float = 10) -> dict[str, object]:
    """The pod's stats once it runs n processes."""
    deadline = time.monotonic() + timeout
    while True:
        row = stats(e, pod)[0]
        if row["pids"] == n or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def test_member_over_the_memory_limit_is_killed(pod_env: PodEnv) -> None:
    pod = pod_env.create("--memory", "64M")
    r = pod_env.run("join", pod, "--", "python3", "-c", "b = bytearray(200 * 1024 * 1024)")
    assert r.returncode == 137, r.stderr
    pod_env.run("join", "-d", "--name", "hog", pod, "--", "python3", "-c",
                "b = bytearray(200 * 1024 * 1024)", check=True)
    for _ in range(100):
        states = {m["name"]: m["state"]
                  for m in json.loads(pod_env.run("ps", pod, "--json").stdout)}
        if states["hog"] != "running":
            break
        time.sleep(0.05)
    assert states["hog"] == "killed (SIGKILL, out of memory)"
    # below the limit all is well, and the pod survived its member's death
    r = pod_env.run("join", pod, "--", "python3", "-c", "b = bytearray(30 * 1024 * 1024)")
    assert r.returncode == 0, r.stderr
    assert pod_env.inspect(pod)["state"] == "running"


def test_fork_fails_at_the_pids_limit(pod_env: PodEnv) -> None:
    pod = pod_env.create("--pids", "8")
    script = (
        "import os, signal, errno\n"
        "kids = []\n"
        "try:\n"
        "    while len(kids) < 50:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            signal.pause()\n"
        "        kids.append(pid)\n"
        "except OSError as e:\n"
        "    print(len(kids), errno.errorcode[e.errno])\n"
        "for k in kids:\n"
        "    os.kill(k, 9)\n"
    )
    r = pod_env.run("join", pod, "--", "python3", "-c", script, check=True)
    # 8 = pause + this python + 6 children
    assert r.stdout == "6 EAGAIN\n"


def test_cpus_throttles(pod_env: PodEnv) -> None:
    pod = pod_env.create("--cpus", "0.25")
    script = (
        "import time\n"
        "c, t = time.process_time(), time.monotonic()\n"
        "while time.monotonic() - t < 2: pass\n"
        "print(time.process_time() - c)\n"  # not the interpreter's start (slow in a TCG VM)
    )
    r = pod_env.run("join", pod, "--", "python3", "-c", script, check=True)
    # 2 s of wall time at a quarter of a CPU: about 0.5 s of CPU time at most (on a
    # busy machine the loop may get less than its quota, never more)
    assert 0.05 < float(r.stdout) < 0.8


def test_invalid_limits_are_usage_errors(pod_env: PodEnv) -> None:
    for flag, value in (("--memory", "64X"), ("--memory", "1k"), ("--pids", "-2"),
                        ("--cpus", "0")):
        r = pod_env.run("create", flag, value, "p")
        assert r.returncode == 2
        assert r.stderr.startswith(f"nspod: create: invalid value for {flag}: ")
    assert not (pod_env.root / "pods" / "p").exists()
    assert pod_cgroups(pod_env.root) == []


def test_pod_and_members_share_the_cgroup_which_rm_removes(pod_env: PodEnv) -> None:
    """The pod's cgroup holds the limits; pause and members are in its children."""
    pod = pod_env.create()
    info = pod_env.inspect(pod)
    dirs = [Path(d) for d in info["cgroups"]]  # type: ignore[union-attr]
    assert dirs and sorted(dirs) == sorted(pod_cgroups(pod_env.root))
    for d in dirs:
        assert (d / "cgroup.procs").read_text().split() == []
        assert (d / "pause" / "cgroup.procs").read_text().split() == [str(info["pid"])]
    member = pod_env.popen("join", pod, "--", "sleep", "30")
    try:
        row = wait_pids(pod_env, pod, 2)
        assert row["pids"] == 2
        # the member joins the cgroup just before it execs: wait for the exec
        deadline = time.monotonic() + 10
        while True:
            procs = {int(p) for p in (dirs[0] / "members" / "cgroup.procs").read_text().split()}
            sleepers = {p for p in procs if Path(f"/proc/{p}/comm").read_text() == "sleep\n"}
            if sleepers or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(procs) == 1 and len(sleepers) == 1
        # nspod's own client is not counted
        assert member.pid not in procs
    finally:
        pod_env.run("rm", "-f", "-t", "0", pod, check=True)
        member.wait(10)
    assert not any(d.exists() for d in dirs)


def test_failed_create_leaves_no_cgroup(pod_env: PodEnv) -> None:
    for step in ("cgroup", "pause", "namespaces", "record"):
        env = dict(pod_env.env, NSPOD_FAIL_AT=step)
        r = subprocess.run([str(NSPOD), "create",
                            "--memory", "64M", "failing"], env=env, capture_output=True, text=True)
        assert (r.returncode, r.stderr) == (125, f"nspod: injected failure at {step}\n")
        assert pod_cgroups(pod_env.root) == [], step
        assert not (pod_env.root / "pods" / "failing").exists()


def test_stats_figures(pod_env: PodEnv) -> None:
    pod = pod_env.create("--memory", "64M", "--pids", "50")
    idle = pod_env.create()
    hog = pod_env.popen(
        "join", pod, "--", "python3", "-c",
        "import time; b = bytearray(20 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); "
        "time.sleep(30)",
    )
    try:
        row = wait_pids(pod_env, pod, 2)
        deadline = time.monotonic() + 10
        while row["memory_bytes"] < 20 * MiB and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.05)
            row = stats(pod_env, pod)[0]
        assert row["name"] == pod
        assert row["pids"] == 2 and row["pids_limit"] == 50
        assert row["memory_limit_bytes"] == 64 * MiB
        assert 20 * MiB <= row["memory_bytes"] <= 64 * MiB  # type: ignore[operator]
        assert row["cpu_seconds"] > 0  # type: ignore[operator]
        rows = {r["name"]: r for r in stats(pod_env)}  # every running pod
        assert set(rows) == {pod, idle}
        assert rows[idle]["pids"] == 1 and rows[idle]["memory_limit_bytes"] is None
        table = pod_env.run("stats", "--no-stream", pod, check=True).stdout.splitlines()
        assert table[0].split()[:3] == ["NAME", "CPU", "%"]
        assert table[1].startswith(pod) and "/ 64MiB" in table[1] and "2 / 50" in table[1]
    finally:
        hog.kill()
        hog.wait(10)


def test_stats_streams_until_interrupted(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    p = pod_env.popen("stats", pod, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = ""
    try:
        # two tables, however slow the machine (a TCG VM takes seconds for the first)
        assert p.stdout is not None
        deadline = time.monotonic() + 30
        while out.count(pod) < 2 and time.monotonic() < deadline:
            out += p.stdout.readline()
    finally:
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    out += rest
    assert out.count("NAME") >= 2 and out.count(pod) >= 2


def test_stats_of_unknown_pod(pod_env: PodEnv) -> None:
    r = pod_env.run("stats", "--no-stream", "nope")
    assert (r.returncode, r.stderr) == (125, 'nspod: pod "nope": no such pod\n')
