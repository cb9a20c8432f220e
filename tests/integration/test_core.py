"""Issue 3: pause as PID 1 in fresh namespaces; create, join, ls, inspect, stop, rm."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import NSPOD, PodEnv, live_pids

pytestmark = pytest.mark.root


def pod_pids(e: PodEnv, pod: str) -> list[tuple[int, str]]:
    out = e.run("join", pod, "--", "ps", "-e", "-o", "pid=,comm=", check=True).stdout
    return [(int(p), c) for p, c in (line.split(None, 1) for line in out.splitlines())]


def test_create_runs_pause_as_pid1_in_new_namespaces(pod_env: PodEnv) -> None:
    out = pod_env.run("create", "web", check=True).stdout
    assert out.strip() == "web"
    info = pod_env.inspect("web")
    assert info["name"] == "web" and info["state"] == "running" and info["hostname"] == "web"
    pid = info["pid"]
    assert isinstance(pid, int) and pid > 1
    for kind in ("pid", "uts", "ipc", "mnt", "net"):
        pinned = os.stat(info["namespaces"][kind]).st_ino  # type: ignore[index]
        assert pinned == os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        assert pinned != os.stat(f"/proc/self/ns/{kind}").st_ino, kind
    cmdline = pod_env.run("join", "web", "--", "cat", "/proc/1/cmdline", check=True).stdout
    assert cmdline.split("\0")[0].endswith("pause")
    assert pod_env.run("join", "web", "--", "hostname", check=True).stdout.strip() == "web"
    # ps inside shows pause as PID 1 and the pod's processes only
    procs = pod_pids(pod_env, "web")
    assert procs[0] == (1, "pause")
    assert [c for _, c in procs] == ["pause", "ps"]


def test_create_generates_a_name_and_takes_a_hostname(pod_env: PodEnv) -> None:
    name = pod_env.create("--hostname", "box")
    assert name.startswith("pod-")
    assert pod_env.run("join", name, "--", "hostname", check=True).stdout.strip() == "box"
    assert name in pod_env.run("ls", "-q", check=True).stdout.split()


def test_join_passes_status_stdio_env_and_workdir(pod_env: PodEnv) -> None:
    pod_env.create("p")
    assert pod_env.run("join", "p", "--", "sh", "-c", "exit 7").returncode == 7
    r = pod_env.run("join", "p", "--", "cat", input="from stdin\n")
    assert (r.returncode, r.stdout) == (0, "from stdin\n")
    r = pod_env.run("join", "p", "--", "sh", "-c", "echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    r = pod_env.run("join", "-e", "A=1", "p", "-e", "B=two words", "-w", "/tmp", "--",
                    "sh", "-c", 'echo "$A|$B|$(pwd)"', check=True)
    assert r.stdout == "1|two words|/tmp\n"
    # podman-style: options of the command after POD are the command's
    r = pod_env.run("join", "p", "sh", "-c", "echo -n ok", check=True)
    assert r.stdout == "ok"


def test_join_exit_codes_for_exec_failures_and_signals(pod_env: PodEnv) -> None:
    pod_env.create("p")
    r = pod_env.run("join", "p", "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert r.stderr == "nspod: exec no-such-command-xyz: executable file not found\n"
    r = pod_env.run("join", "p", "--", "/etc/hostname")
    assert r.returncode == 126 and r.stderr.startswith("nspod: exec /etc/hostname: ")
    assert pod_env.run("join", "p", "--", "sh", "-c", "kill -KILL $$").returncode == 137
    assert pod_env.run("join", "p", "--", "sh", "-c", "kill -TERM $$").returncode == 143
    r = pod_env.run("join", "p", "-w", "/no/such/dir", "--", "true")
    assert r.returncode == 125 and "/no/such/dir" in r.stderr


@pytest.mark.parametrize("sig", ["INT", "TERM", "HUP", "QUIT", "USR1", "USR2"])
def test_signals_sent_to_nspod_reach_the_command(pod_env: PodEnv, sig: str) -> None:
    pod_env.create("p")
    marker = pod_env.root / "ready"
    script = f"trap 'exit 42' {sig}; touch {marker}; while :; do sleep 0.05; done"
    proc = pod_env.popen("join", "p", "--", "sh", "-c", script)
    try:
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline, "member never started"
            time.sleep(0.01)
        proc.send_signal(getattr(signal, f"SIG{sig}"))
        assert proc.wait(timeout=10) == 42
    finally:
        proc.kill()
        proc.wait()


def test_signal_that_kills_the_command_gives_128_plus_n(pod_env: PodEnv) -> None:
    pod_env.create("p")
    marker = pod_env.root / "ready"
    proc = pod_env.popen("join", "p", "--", "sh", "-c", f"touch {marker}; exec sleep 30")
    try:
        while not marker.exists():
            time.sleep(0.01)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
    finally:
        proc.kill()
        proc.wait()


def test_orphans_are_reaped_by_pause(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "p", "--", "sh", "-c",
                "for i in $(seq 40); do sleep 0.2 & done; exit 0", check=True)
    # the 40 sleeps were orphaned: they must be pause's children, inside the pod
    info = pod_env.inspect("p")
    pause = info["pid"]
    deadline = time.monotonic() + 10
    while True:
        stats = pod_env.run("join", "p", "--", "ps", "-e", "-o", "stat=,comm=", check=True).stdout
        lines = [line.split() for line in stats.splitlines()]
        if not any(comm == "sleep" for _, comm in lines):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not [line for line in lines if line[0].startswith("Z")], stats
    # and none of them went to the host's init
    children = Path(f"/proc/{pause}/task/{pause}/children").read_text().split()
    assert all(Path(f"/proc/{c}").exists() for c in children)


def test_orphans_stay_in_the_pod_while_running(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "p", "--", "sh", "-c", "sleep 30 >/dev/null 2>&1 & exit 0", check=True)
    pause = pod_env.inspect("p")["pid"]
    kids = Path(f"/proc/{pause}/task/{pause}/children").read_text().split()
    comms = [Path(f"/proc/{k}/comm").read_text().strip() for k in kids]
    assert "sleep" in comms  # re-parented to pause, not to the host's init


def test_stop_and_rm_leave_nothing(pod_env: PodEnv) -> None:
    pod_env.create("p")
    info = pod_env.inspect("p")
    pid = info["pid"]
    assert isinstance(pid, int)
    pod_env.run("join", "p", "--", "sh", "-c", "sleep 60 >/dev/null 2>&1 & exit 0", check=True)
    t0 = time.monotonic()
    assert pod_env.run("stop", "p", check=True).stdout.strip() == "p"
    assert time.monotonic() - t0 < 5  # sleep exits on TERM: no grace period wait
    assert live_pids([pid]) == []
    assert pod_env.inspect("p")["state"] == "stopped"
    r = pod_env.run("join", "p", "--", "true")
    assert r.returncode == 125 and "not running" in r.stderr
    mounts = Path("/proc/self/mounts").read_text()
    assert str(pod_env.root) not in mounts
    pod_env.run("rm", "p", check=True)
    assert pod_env.run("ls", "-q", check=True).stdout == ""
    assert list((pod_env.root / "pods").iterdir()) == []


def test_stop_waits_the_grace_period_then_kills(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "p", "--", "sh", "-c",
                "(trap '' TERM; while :; do sleep 0.1; done) >/dev/null 2>&1 & exit 0", check=True)
    t0 = time.monotonic()
    pod_env.run("stop", "-t", "1", "p", check=True)
    took = time.monotonic() - t0
    assert 0.9 < took < 4, took
    assert pod_env.inspect("p")["state"] == "stopped"


def test_rm_refuses_a_running_pod_and_rm_f_stops_it(pod_env: PodEnv) -> None:
    pod_env.create("p")
    r = pod_env.run("rm", "p")
    assert r.returncode == 125 and "running" in r.stderr
    pid = pod_env.inspect("p")["pid"]
    pod_env.run("rm", "-f", "p", check=True)
    assert live_pids([pid]) == []  # type: ignore[list-item]
    assert not (pod_env.root / "pods" / "p").exists()


def test_a_pod_whose_pause_died_is_exited(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pid = pod_env.inspect("p")["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while live_pids([pid]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ls = pod_env.run("ls", check=True).stdout
    assert "exited" in ls and "running" not in ls
    assert pod_env.inspect("p")["state"] == "exited"
    r = pod_env.run("join", "p", "--", "true")
    assert r.returncode == 125
    assert r.stderr == 'nspod: join pod "p": pod is not running\n'
    assert str(pod_env.root) not in Path("/proc/self/mounts").read_text()


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", "x" * 64, "-dash", ".hidden", "a b"])
def test_bad_names_are_refused_and_nothing_is_made(pod_env: PodEnv, bad: str) -> None:
    r = pod_env.run("create", "--", bad)
    assert r.returncode in (2, 125)
    assert r.stderr.startswith("nspod: invalid pod name") and r.stderr.count("\n") == 1
    pods = pod_env.root / "pods"
    assert not pods.exists() or list(pods.iterdir()) == []
    assert not Path(pod_env.root.parent / "evil").exists()


def test_duplicate_and_missing_pods(pod_env: PodEnv) -> None:
    pod_env.create("x")
    r = pod_env.run("create", "x")
    assert (r.returncode, r.stderr) == (125, 'nspod: pod "x" already exists\n')
    for verb in (["join", "nope", "--", "true"], ["stop", "nope"], ["rm", "nope"],
                 ["inspect", "nope"]):
        r = pod_env.run(*verb)
        assert (r.returncode, r.stderr) == (125, 'nspod: pod "nope": no such pod\n'), verb


def test_usage_errors(pod_env: PodEnv) -> None:
    pod_env.create("p")
    r = pod_env.run("join", "p", "--")
    assert r.returncode == 2 and r.stderr.startswith("nspod: join: no command given")
    r = pod_env.run("join", "p")
    assert r.returncode == 2
    r = pod_env.run("create", "--bogus")
    assert (r.returncode, r.stderr) == (2, "nspod: create: unknown option --bogus\n")
    r = pod_env.run("frobnicate")
    assert r.returncode == 2 and "unknown verb" in r.stderr


def test_not_root_is_refused(pod_env: PodEnv) -> None:
    pod_env.create("p")
    for verb in (["create", "x"], ["join", "p", "--", "true"], ["ls"], ["inspect", "p"],
                 ["ps", "p"], ["stop", "p"], ["rm", "-f", "p"], ["gc"]):
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(NSPOD), *verb],
            env=pod_env.env, capture_output=True, text=True, timeout=30,
        )
        assert r.returncode == 125, verb
        assert r.stderr == f"nspod: {verb[0]}: must be run as root (try sudo)\n"
    assert pod_env.inspect("p")["state"] == "running"  # nothing was done


def test_debug_shows_a_traceback(pod_env: PodEnv) -> None:
    r = pod_env.run("--debug", "inspect", "nope")
    assert r.returncode == 125 and "Traceback" in r.stderr
    assert "Traceback" not in pod_env.run("inspect", "nope").stderr


def test_parallel_creates_all_succeed(pod_env: PodEnv) -> None:
    names = [f"par{i}" for i in range(8)]
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def make(n: str) -> None:
        results[n] = pod_env.run("create", n, timeout=60)

    threads = [threading.Thread(target=make, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {n: r.returncode for n, r in results.items()} == {n: 0 for n in names}
    listed = json.loads(pod_env.run("ls", "--json", check=True).stdout)
    assert sorted(p["name"] for p in listed) == names
    assert all(p["state"] == "running" for p in listed)
    assert len({p["pid"] for p in listed}) == 8


@pytest.mark.parametrize("step", ["dir", "pause", "namespaces", "record"])
def test_a_failed_create_rolls_back_every_step(pod_env: PodEnv, step: str) -> None:
    env = dict(pod_env.env, NSPOD_FAIL_AT=step)
    r = subprocess.run([str(NSPOD), "create", "doomed"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 125
    assert r.stderr == f"nspod: injected failure at {step}\n"
    assert not (pod_env.root / "pods" / "doomed").exists()
    assert str(pod_env.root) not in Path("/proc/self/mounts").read_text()
    # and the name is free again
    assert pod_env.run("create", "doomed").returncode == 0
