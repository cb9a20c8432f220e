"""Issue 3: pause as PID 1 in fresh namespaces; create, join, ls, inspect, stop, rm."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import NSPOD, PodEnv, live_pids, nft_elements, pauses_under, pod_cgroups

from nspod.pod import CREATE_STEPS

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


def pod_processes(pause: int) -> dict[int, tuple[int, str, str]]:
    """Every process in pause's PID namespace but pause: host pid -> (host ppid, state, comm)."""
    ns = os.stat(f"/proc/{pause}/ns/pid").st_ino
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pause:
            continue
        try:
            if os.stat(entry / "ns" / "pid").st_ino != ns:
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        out[int(entry.name)] = (int(ppid), state, comm)
    return out


def test_every_orphan_is_reparented_to_pause_and_reaped(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pause = pod_env.inspect("p")["pid"]
    assert isinstance(pause, int)
    # a detached member's parent is pause, not the nspod that started it nor the host's init
    pod_env.run("join", "-d", "--name", "m", "p", "--", "sleep", "60", check=True)
    member = json.loads((pod_env.root / "pods/p/members/m.json").read_text())["host_pid"]
    first = pod_processes(pause)
    assert len(first) == 2 and {pp for pp, _, _ in first.values()} == {pause}, first  # its logger
    assert first[member][::2] == (pause, "sleep")
    # sh starts 40 sleeps and exits: each is orphaned at once
    pod_env.run("join", "p", "--", "sh", "-c",
                "for i in $(seq 40); do sleep 60 >/dev/null 2>&1 & done; exit 0", check=True)
    procs = {pid: p for pid, p in pod_processes(pause).items() if pid not in first}
    assert sorted(c for _, _, c in procs.values()) == ["sleep"] * 40, procs
    # every one of them is pause's child (host view), none the host's init's or nspod's
    assert {pp for pp, _, _ in procs.values()} == {pause}, procs
    # all killed: pause reaps every one, no zombie stays
    pod_env.run("kill", "p", check=True)
    deadline = time.monotonic() + 10
    while left := pod_processes(pause):
        assert time.monotonic() < deadline, f"not reaped: {left}"
        time.sleep(0.05)
    assert live_pids([pause]) == [pause]


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


def test_a_pods_mount_namespace_holds_no_namespace_pin(pod_env: PodEnv) -> None:
    # a pin outside nspod's: another state root's pods, or `ip netns add`, bind
    # a namespace file somewhere on the host; a pod's mount namespace (a copy
    # of the host's) leaves it out, as it leaves out its own root's pins
    holder = subprocess.Popen(["unshare", "-n", "sleep", "60"])
    pin = pod_env.root / "foreign pin"  # a space: mountinfo writes it \040
    pod_env.root.mkdir(parents=True, exist_ok=True)
    pin.touch()
    try:
        time.sleep(0.1)
        subprocess.run(["mount", "--bind", f"/proc/{holder.pid}/ns/net", str(pin)], check=True)
        pod_env.create("p")
        seen = pod_env.run("join", "p", "--", "cat", "/proc/self/mountinfo", check=True).stdout
        assert [ln for ln in seen.splitlines() if " - nsfs " in ln] == []
    finally:
        subprocess.run(["umount", str(pin)])
        holder.kill()
        holder.wait()


def kill_and_wait(pid: int) -> None:
    """SIGKILL to pid, back once it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while live_pids([pid]):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_pod_whose_pause_died_is_exited(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pid = pod_env.inspect("p")["pid"]
    assert isinstance(pid, int)
    kill_and_wait(pid)
    ls = pod_env.run("ls", check=True).stdout
    assert "exited" in ls and "running" not in ls
    assert pod_env.inspect("p")["state"] == "exited"
    r = pod_env.run("join", "p", "--", "true")
    assert r.returncode == 125
    assert r.stderr == 'nspod: join pod "p": pod is not running\n'
    assert str(pod_env.root) not in Path("/proc/self/mounts").read_text()


def test_what_a_dead_pod_held_goes_to_the_next_pod_that_asks(pod_env: PodEnv) -> None:
    # nothing noticed the death (no ls, no gc): the create that wants the
    # address and the port frees them from the dead pod
    port = free_port()
    ip = pod_env.subnet.rsplit(".", 1)[0] + ".77"
    pod_env.create("dead", "--ip", ip, "-p", f"{port}:80")
    pid = pod_env.inspect("dead")["pid"]
    assert isinstance(pid, int)
    kill_and_wait(pid)
    pod_env.create("next", "--ip", ip, "-p", f"{port}:80")
    info = pod_env.inspect("next")
    assert info["state"] == "running" and info["ip"] == ip
    assert pod_env.inspect("dead")["state"] == "exited"


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", "x" * 64, "-dash", ".hidden", "a b"])
def test_bad_names_are_refused_and_nothing_is_made(pod_env: PodEnv, bad: str) -> None:
    r = pod_env.run("create", "--", bad)
    assert r.returncode == 2  # the README: a bad name is bad usage
    assert r.stderr.startswith(f'nspod: invalid pod name "{bad[:20]}') and r.stderr.count("\n") == 1
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


def free_port() -> int:
    """A TCP port no socket uses now (the kernel's choice: above 10000 here)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def held_by(e: PodEnv) -> dict[str, object]:
    """Everything a pod of e can hold, outside its process: what rollback must undo."""
    records = {d: sorted(f.name for f in (e.root / d).iterdir() if f.suffix != ".lock")
               for d in ("ipam", "ports") if (e.root / d).exists()}
    pods = e.root / "pods"
    return {
        "pods": sorted(f.name for f in pods.iterdir()) if pods.exists() else [],
        "mounts": [m for m in Path("/proc/self/mounts").read_text().split()
                   if m.startswith(str(e.root))],
        "veths": subprocess.run(["ip", "-o", "link", "show", "master", e.bridge],
                                capture_output=True, text=True).stdout,
        "nft elements": nft_elements(e.table),
        "address records": records.get("ipam", []),
        "port records": records.get("ports", []),
        "cgroups": pod_cgroups(e.root),
        "pauses": pauses_under(e.root),
    }


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_a_failed_create_rolls_back_every_step(pod_env: PodEnv, step: str) -> None:
    # a pod that uses every step: an address, a published port, limits (a cgroup)
    port = str(free_port())
    args = ["create", "doomed", "-p", f"{port}:80", "--memory", "64M"]
    env = dict(pod_env.env, NSPOD_FAIL_AT=step)
    r = subprocess.run([str(NSPOD), *args], env=env, capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (125, f"nspod: injected failure at {step}\n")
    assert held_by(pod_env) == held_by_nothing()
    # the name, the address (the subnet's first, which it was given) and the port are free
    first = pod_env.subnet.rsplit(".", 1)[0] + ".2"
    assert pod_env.run(*args, "--ip", first).returncode == 0
    pod_env.pods_seen.add("doomed")


def held_by_nothing() -> dict[str, object]:
    return {"pods": [], "mounts": [], "veths": "", "nft elements": [], "address records": [],
            "port records": [], "cgroups": [], "pauses": []}
