"""Issue 19: members that come back: wait, restart policies, health checks, stop/start."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import NSPOD, SLOW, PodEnv, live_pids, pauses_under, pod_cgroups

pytestmark = pytest.mark.root


def ps(e: PodEnv, pod: str) -> dict[str, dict[str, object]]:
    return {m["name"]: m for m in json.loads(e.run("ps", pod, "--json", check=True).stdout)}


def until(what: str, cond, timeout: float = 10 * SLOW):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def monitor_pid(e: PodEnv, pod: str) -> int:
    try:
        pid, start = (e.root / "pods" / pod / "monitor.pid").read_text().split()
    except (OSError, ValueError):
        return 0
    return int(pid) if live_pids([int(pid)]) else 0


def test_wait_prints_the_exit_code_and_times_out(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "-d", "--name", "a", "p", "--", "sh", "-c", "sleep 0.5; exit 7",
                check=True)
    pod_env.run("join", "-d", "--name", "b", "p", "--", "sleep", "30", check=True)
    r = pod_env.run("wait", "--condition", "running", "p", "b", check=True)
    assert r.stdout == "0\n"
    t0 = time.monotonic()
    r = pod_env.run("wait", "p", "a", check=True)
    assert r.stdout == "7\n" and time.monotonic() - t0 < 5
    r = pod_env.run("wait", "--timeout", "300ms", "p", "b")
    assert r.returncode == 125
    assert r.stderr == 'nspod: wait: member "b" not stopped after 0.3 s\n'
    r = pod_env.run("wait", "--condition", "bogus", "p")
    assert r.returncode == 2
    # the pod: stopped once another process stops it; members killed by the stop
    waiter = pod_env.popen("wait", "p", "b", stdout=-1)
    # a grace long enough for a loaded machine (two lab VMs beside the suite took
    # more than 1 s to end sleep and its logger): stop returns once they end
    pod_env.run("stop", "-t", "10", "p", check=True)
    out, _ = waiter.communicate(timeout=20)
    assert waiter.returncode == 0 and out == "143\n"
    assert pod_env.run("wait", "--timeout", "1", "p", check=True).stdout == ""


def test_on_failure_3_runs_four_times_then_stays_ended(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "-d", "--name", "f", "--restart", "on-failure:3", "p", "--",
                "sh", "-c", "echo run; exit 3", check=True)
    r = pod_env.run("wait", "--timeout", "20", "p", "f", check=True)
    assert r.stdout == "3\n"
    time.sleep(1.0)  # the backoff after a 4th run would be 0.8 s: none comes
    m = ps(pod_env, "p")["f"]
    assert m["restarts"] == 3 and m["state"] == "exited (3)" and m["restart"] == "on-failure:3"
    assert m["last_status"] == "exited (3)"
    assert pod_env.run("logs", "p", "f", check=True).stdout == "run\n" * 4
    table = pod_env.run("ps", "p", check=True).stdout.splitlines()
    assert table[0].split()[5] == "RESTARTS" and table[1].split()[5] == "3"


def test_always_brings_a_killed_member_back_but_not_after_a_user_kill(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "-d", "--name", "a", "--restart", "always", "p", "--", "sleep", "60",
                check=True)
    first = until("running", lambda: ps(pod_env, "p")["a"]["state"] == "running"
                  and ps(pod_env, "p")["a"])
    os.kill(first["pid"], signal.SIGKILL)  # not through nspod: a crash
    t0 = time.monotonic()
    again = until("restarted", lambda: (m := ps(pod_env, "p")["a"])["pid"] != first["pid"]
                  and m["state"] == "running" and m, timeout=2)
    assert time.monotonic() - t0 < 2
    assert again["restarts"] == 1 and again["last_status"] == "killed (SIGKILL)"
    pod_env.run("kill", "p", "a", check=True)  # the user's: stays down
    r = pod_env.run("wait", "--timeout", "5", "p", "a", check=True)
    assert r.stdout == "137\n"
    time.sleep(0.5)
    m = ps(pod_env, "p")["a"]
    assert m["state"] == "killed (SIGKILL)" and m["restarts"] == 1


def test_stop_never_races_a_crash_loop(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "-d", "--name", "loop", "--restart", "always", "p", "--", "true",
                check=True)
    until("a few restarts", lambda: ps(pod_env, "p")["loop"]["restarts"] >= 3)
    pod_env.run("stop", "-t", "1", "p", check=True)
    count = ps(pod_env, "p")["loop"]["restarts"]
    assert monitor_pid(pod_env, "p") == 0
    time.sleep(1.5)
    assert ps(pod_env, "p")["loop"]["restarts"] == count
    assert pod_env.run("ls", "--json", check=True).stdout.count('"stopped"') == 1


def test_stop_then_start_runs_the_members_again_and_the_port_answers(pod_env: PodEnv) -> None:
    port = 20000 + os.getpid() % 20000
    pod_env.create("-p", f"{port}:8000", "p")
    www = pod_env.root / "www"
    www.mkdir()
    (www / "index.html").write_text("hello again\n")
    pod_env.run("join", "-d", "--name", "web", "--restart", "on-failure:2",
                "--health-cmd", "python3 -c 'import urllib.request as u; "
                "u.urlopen(\"http://127.0.0.1:8000/\")'", "p", "--",
                "python3", "-m", "http.server", "-d", str(www), "8000", check=True)
    pod_env.run("join", "-d", "--name", "side", "p", "--", "sleep", "60", check=True)
    pod_env.run("join", "-d", "--name", "done", "p", "--", "true", check=True)
    pod_env.run("wait", "p", "done", check=True)
    pod_env.run("wait", "--condition", "healthy", "--timeout", "20", "p", "web", check=True)
    before = ps(pod_env, "p")
    pod_env.run("stop", "-t", "2", "p", check=True)
    pod_env.run("start", "p", check=True)
    after = ps(pod_env, "p")
    for name in ("web", "side"):
        assert after[name]["state"] == "running", after[name]
        assert after[name]["pid"] != before[name]["pid"]
        assert after[name]["restarts"] == 0
    assert after["done"] == before["done"]  # ended on its own before the stop: stays ended
    pod_env.run("wait", "--condition", "healthy", "--timeout", "20", "p", "web", check=True)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        assert resp.read() == b"hello again\n"


def test_health_turns_unhealthy_and_restart_restarts(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    flag = pod_env.root / "healthy"
    flag.write_text("")
    pod_env.run("join", "-d", "--name", "h", "--health-cmd", f"cat {flag}",
                "--health-interval", "0.3s", "--health-retries", "10",
                "--health-on-failure", "restart", "p", "--", "sleep", "60", check=True)
    t0 = time.monotonic()
    pod_env.run("wait", "--condition", "healthy", "--timeout", "10", "p", "h", check=True)
    assert time.monotonic() - t0 < 3
    assert ps(pod_env, "p")["h"]["health"] == "healthy"
    first = ps(pod_env, "p")["h"]
    r = pod_env.run("healthcheck", "run", "p", "h")
    assert (r.returncode, r.stdout) == (0, "healthy\n")
    flag.unlink()
    # ten failed checks (3 s) before the restart: time for a run by hand to
    # find the member still there, even on the lab's slow VM
    r = pod_env.run("healthcheck", "run", "p", "h")
    assert r.returncode == 1, r.stderr
    m = until("a restart", lambda: (m := ps(pod_env, "p")["h"])["restarts"] >= 1 and m)
    assert m["last_status"] == "killed (SIGKILL)" and m["pid"] != first["pid"]
    state = json.loads((pod_env.root / "pods" / "p" / "health" / "h.json").read_text())
    assert state["log"][-1]["exit_code"] == 1 and "No such file" in state["log"][-1]["output"]
    flag.write_text("")
    pod_env.run("wait", "--condition", "healthy", "--timeout", "10", "p", "h", check=True)


def test_a_killed_monitor_is_replaced_by_the_next_verb(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    pod_env.run("join", "-d", "--name", "a", "--restart", "always", "p", "--", "sleep", "60",
                check=True)
    mon = until("a monitor", lambda: monitor_pid(pod_env, "p"))
    first = until("running", lambda: ps(pod_env, "p")["a"]["state"] == "running"
                  and ps(pod_env, "p")["a"])
    os.kill(mon, signal.SIGKILL)
    until("monitor gone", lambda: not live_pids([mon]))
    os.kill(first["pid"], signal.SIGKILL)  # while no monitor runs
    time.sleep(0.5)
    # ps notices, starts a monitor, which restarts the member: once
    again = until("restarted", lambda: (m := ps(pod_env, "p")["a"])["state"] == "running"
                  and m["pid"] != first["pid"] and m)
    assert again["restarts"] == 1
    assert monitor_pid(pod_env, "p") not in (0, mon)
    time.sleep(0.5)
    assert ps(pod_env, "p")["a"]["restarts"] == 1


def test_restart_and_health_need_detach(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    r = pod_env.run("join", "--restart", "always", "p", "--", "true")
    assert r.returncode == 2
    assert r.stderr == "nspod: join: --restart, --health-cmd and --log-max-size need -d\n"
    r = pod_env.run("join", "-d", "--restart", "sometimes", "p", "--", "true")
    assert r.returncode == 2 and "--restart" in r.stderr
    r = pod_env.run("join", "-d", "--health-retries", "2", "p", "--", "true")
    assert r.returncode == 2 and "need --health-cmd" in r.stderr


def test_logs_rotate_within_twice_the_bound_and_keep_whole_lines(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    # 10 MB, in lines of 50 bytes and a few of 20 kB (longer than the logger's buffer)
    prog = ("import sys\n"
            "for i in range(200000):\n"
            "    sys.stdout.write('line %06d %s\\n' % (i, 'x' * 38))\n"
            "    if i % 50000 == 0: sys.stdout.write('y' * 20000 + '\\n')\n")
    pod_env.run("join", "-d", "--name", "big", "--log-max-size", "64k", "p", "--",
                "python3", "-c", prog, check=True)
    assert pod_env.run("wait", "--timeout", "60", "p", "big", check=True).stdout == "0\n"
    logs = pod_env.root / "pods" / "p" / "logs"
    sizes = {f.name: f.stat().st_size for f in logs.iterdir()}
    assert set(sizes) == {"big.log", "big.log.1"}, sizes
    assert sum(sizes.values()) <= 2 * 64 * 1024, sizes
    out = pod_env.run("logs", "p", "big", check=True).stdout.splitlines()
    numbers = [int(line.split()[1]) for line in out if line.startswith("line ")]
    assert numbers[-1] == 199999
    # what is kept is whole and in order: no line lost or cut at a rotation
    assert numbers == list(range(numbers[0], 200000))
    assert all(line == f"line {n:06d} {'x' * 38}" for line, n in
               zip([ln for ln in out if ln.startswith("line ")], numbers, strict=True))
    tail = pod_env.run("logs", "--tail", "2", "p", "big", check=True).stdout
    assert tail == f"line 199998 {'x' * 38}\nline 199999 {'x' * 38}\n"


def test_logs_follow_and_since_across_restarts(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    follow = None
    try:
        pod_env.run("join", "-d", "--name", "r", "--restart", "on-failure:2", "p", "--",
                    "sh", "-c", "echo run; sleep 0.3; exit 1", check=True)
        follow = pod_env.popen("logs", "-f", "p", "r", stdout=-1)
        out, _ = follow.communicate(timeout=20)
        assert follow.returncode == 0
        assert out == "run\n" * 3  # -f stays through both restarts, ends with the last run
        assert ps(pod_env, "p")["r"]["restarts"] == 2
        assert pod_env.run("logs", "--since", "1m", "p", "r", check=True).stdout == "run\n" * 3
        assert pod_env.run("logs", "--since", "2099-01-01T00:00:00Z", "p", "r",
                           check=True).stdout == ""
    finally:
        if follow is not None and follow.poll() is None:
            follow.kill()
            follow.wait()


def _power_cut(e: PodEnv) -> None:
    """What a power cut does: every process of the pods SIGKILLed, the kernel's
    objects gone (namespaces, veths, rules, cgroups), the tmpfs state root empty."""
    pods = e.root / "pods"
    for pdir in pods.iterdir():
        try:  # the pod's pid namespace is pause's (it has no pin: nspod/pins.py)
            pause = json.loads((pdir / "pod.json").read_text()).get("pid") or 0
        except (OSError, ValueError):
            pause = 0
        pid_ns = Path(f"/proc/{pause}/ns/pid")
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and pause and _pid_ns_is(int(p.name), pid_ns)]
        pids.append(pause)
        pids.append(monitor_pid(e, pdir.name))
        for pid in pids:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    until("all dead", lambda: not any(live_pids([p]) for p in pauses_under(e.root)))
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        if line.split()[1].startswith(str(e.root) + "/"):
            subprocess.run(["umount", "-l", line.split()[1]], check=False)
    links = subprocess.run(["ip", "-o", "link", "show", "master", e.bridge],
                           capture_output=True, text=True).stdout
    for line in links.splitlines():
        subprocess.run(["ip", "link", "del", line.split(": ")[1].split("@")[0]], check=False)
    subprocess.run(["nft", "delete", "table", "ip", e.table], check=False)
    for d in pod_cgroups(e.root):
        until(f"{d} empty", lambda d=d: _rmdir(d))
    for child in e.root.iterdir():  # /run is wiped; the storage root is on disk
        if child != e.storage:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _pid_ns_is(pid: int, pin: Path) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino == pin.stat().st_ino
    except OSError:
        return False


def _rmdir(d: Path) -> bool:
    """Removes cgroup d and those below it (pause's and the members'), deepest first."""
    for child in sorted((c for c in d.rglob("*") if c.is_dir()), key=lambda c: -len(c.parts)):
        try:
            child.rmdir()
        except OSError:
            return False
    try:
        d.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def test_power_cut_then_start_all_gives_back_what_should_run(pod_env: PodEnv) -> None:
    port = 20000 + (os.getpid() + 7) % 20000
    www = Path(f"{pod_env.root}-www")
    www.mkdir()
    try:
        (www / "index.html").write_text("back again\n")
        pod_env.create("-p", f"{port}:8000", "p")
        pod_env.run("join", "-d", "--name", "web", "--restart", "always", "--health-cmd",
                    "python3 -c 'import urllib.request as u; u.urlopen(\"http://127.0.0.1:8000/\")'",
                    "p", "--", "python3", "-m", "http.server", "-d", str(www), "8000", check=True)
        pod_env.run("join", "-d", "--name", "us", "--restart", "unless-stopped", "p", "--",
                    "sleep", "60", check=True)
        pod_env.run("join", "-d", "--name", "once", "p", "--", "sleep", "60", check=True)
        pod_env.run("kill", "p", "us", check=True)  # the user's: stays down, after a reboot too
        pod_env.create("--net", "none", "q")
        pod_env.run("join", "-d", "--name", "a", "--restart", "always", "q", "--", "sleep", "60",
                    check=True)
        pod_env.run("stop", "-t", "1", "q", check=True)  # the user's stop: remembered
        pod_env.run("wait", "--condition", "healthy", "--timeout", "20", "p", "web", check=True)
        until("web and us kept", lambda: len(list(
            pod_env.storage.glob("pods/*/p/members/*.json"))) == 2)

        _power_cut(pod_env)
        assert pod_env.run("ls", "-q", check=True).stdout == ""

        r = pod_env.run("start", "--all", check=True)
        assert r.stdout == "p\n"
        assert pod_env.run("ls", "-q", check=True).stdout == "p\n"
        members = ps(pod_env, "p")
        assert set(members) == {"web"}  # not "us" (stopped by the user), not "once" (no policy)
        pod_env.run("wait", "--condition", "healthy", "--timeout", "20", "p", "web", check=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.read() == b"back again\n"
        # the stopped pod comes back when the user starts it, with its member
        assert pod_env.run("start", "q", check=True).stdout == "q\n"
        assert ps(pod_env, "q")["a"]["state"] == "running"
    finally:
        shutil.rmtree(www, ignore_errors=True)


def test_generate_systemd_names_the_roots_and_verifies(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    unit = pod_env.run("generate", "systemd", "p", check=True).stdout
    assert f"--root {os.path.realpath(pod_env.root)} start --ignore-running p" in unit
    assert f'Environment=NSPOD_STORAGE="{os.path.realpath(pod_env.storage)}"' in unit
    assert pod_env.run("generate", "systemd", "nope").returncode == 125
    assert pod_env.run("start", "--ignore-running", "p", check=True).stdout == "p\n"
    assert pod_env.run("start", "p").returncode == 125
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    path = Path(f"{pod_env.root}-unit") / "nspod-pod-p.service"
    path.parent.mkdir()
    try:
        path.write_text(unit)
        r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(path.parent)


def _sleepers(e: PodEnv, pod: str) -> list[int]:
    """Processes running `sleep 60` in the pod's PID namespace."""
    # the pod's pid namespace is pause's (it has no pin: nspod/pins.py)
    pin = Path(f"/proc/{e.inspect(pod)['pid']}/ns/pid")
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and _pid_ns_is(int(p.name), pin):
            try:
                if (p / "cmdline").read_bytes() == b"sleep\x0060\x00":
                    out.append(int(p.name))
            except OSError:
                continue
    return live_pids(out)


@pytest.mark.parametrize("step", ["monitor-restart", "monitor-restarted"])
def test_a_monitor_killed_mid_restart_neither_loses_nor_doubles_it(pod_env: PodEnv,
                                                                    step: str) -> None:
    pod_env.create("--net", "none", "p")
    # the first monitor (started by this join) dies at `step` of its first restart
    subprocess.run([str(NSPOD), "join", "-d", "--name", "a", "--restart", "always", "p", "--",
                    "sleep", "60"], env={**pod_env.env, "NSPOD_KILL_AT": step}, check=True,
                   capture_output=True)
    # that monitor up (its pid file comes once it reads its FIFO) before any ps,
    # which would start another while it is still starting
    mon = until("a monitor", lambda: monitor_pid(pod_env, "p"))
    assert f"NSPOD_KILL_AT={step}".encode() in Path(f"/proc/{mon}/environ").read_bytes()
    first = until("running", lambda: ps(pod_env, "p")["a"]["state"] == "running"
                  and ps(pod_env, "p")["a"])
    os.kill(first["pid"], signal.SIGKILL)
    until("the monitor killed at its step", lambda: not live_pids([mon]), timeout=10)
    # the next verbs bring a monitor back; the restart happens, once
    again = until("restarted", lambda: (m := ps(pod_env, "p")["a"])["state"] == "running"
                  and m["pid"] != first["pid"] and m)
    time.sleep(1.0)
    now = ps(pod_env, "p")["a"]
    assert now["restarts"] == 1 and now["pid"] == again["pid"]
    assert _sleepers(pod_env, "p") == [again["pid"]]


def test_a_start_killed_halfway_is_finished_by_the_next_start(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    for name in ("a", "b"):
        pod_env.run("join", "-d", "--name", name, "p", "--", "sleep", "60", check=True)
    pod_env.run("stop", "-t", "1", "p", check=True)
    r = subprocess.run([str(NSPOD), "start", "p"], env={**pod_env.env,
                       "NSPOD_KILL_AT": "start-member"}, capture_output=True)
    assert r.returncode == -signal.SIGKILL
    assert sorted(m["state"] for m in ps(pod_env, "p").values()) == \
        ["killed (SIGTERM)", "running"]  # one member back, the start cut short
    assert pod_env.run("start", "p", check=True).stdout == "p\n"
    members = ps(pod_env, "p")
    assert [m["state"] for m in members.values()] == ["running", "running"]
    assert sorted(_sleepers(pod_env, "p")) == sorted(m["pid"] for m in members.values())
    r = pod_env.run("start", "p")  # nothing left to finish: it runs already
    assert r.returncode == 125 and "already running" in r.stderr


def test_start_all_killed_halfway_is_finished_by_the_next(pod_env: PodEnv) -> None:
    pod_env.create("--net", "none", "p")
    for name in ("a", "b"):
        pod_env.run("join", "-d", "--name", name, "--restart", "always", "p", "--",
                    "sleep", "60", check=True)
    # the monitor keeps them for a reboot once it has seen them (DESIGN.md: a
    # member joined an instant before the power cut may be lost)
    until("both kept", lambda: len(list(pod_env.storage.glob("pods/*/p/members/*.json"))) == 2)
    _power_cut(pod_env)
    r = subprocess.run([str(NSPOD), "start", "--all"], capture_output=True,
                       env={**pod_env.env, "NSPOD_KILL_AT": "restore-member"})
    assert r.returncode == -signal.SIGKILL
    assert len(ps(pod_env, "p")) == 1  # the pod is back with one member: cut short
    pod_env.run("start", "--all", check=True)
    members = ps(pod_env, "p")
    assert sorted(members) == ["a", "b"]
    assert all(m["state"] == "running" for m in members.values())
    assert sorted(_sleepers(pod_env, "p")) == sorted(m["pid"] for m in members.values())


def test_a_health_check_can_do_no_more_than_its_member(pod_env: PodEnv) -> None:
    """The check runs with the member's seccomp filter, capabilities and root:
    the attack a member cannot make (a user namespace: every capability in it)
    fails from its health check too."""
    pod_env.create("--net", "none", "p")
    assert pod_env.run("join", "p", "--", "unshare", "-U", "true").returncode != 0
    pod_env.run("join", "-d", "--name", "h", "--health-cmd", "unshare -U true",
                "--health-interval", "1h", "p", "--", "sleep", "60", check=True)
    r = pod_env.run("healthcheck", "run", "p", "h")
    assert r.returncode == 1
    state = json.loads((pod_env.root / "pods" / "p" / "health" / "h.json").read_text())
    assert "Operation not permitted" in state["log"][-1]["output"]
