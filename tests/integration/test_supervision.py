"""Issue 6: detached members, ps, logs, stop, start, restart, kill, gc, terminals."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import NSPOD, PodEnv, live_pids, pauses_under

pytestmark = pytest.mark.root


def ps(e: PodEnv, pod: str) -> dict[str, dict[str, object]]:
    return {m["name"]: m for m in json.loads(e.run("ps", pod, "--json", check=True).stdout)}


def wait_state(e: PodEnv, pod: str, name: str, want: str, timeout: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        m = ps(e, pod)[name]
        if m["state"] == want:
            return m
        assert time.monotonic() < deadline, m
        time.sleep(0.05)


def test_detached_member_runs_in_the_background_with_logs(pod_env: PodEnv) -> None:
    pod_env.create("p")
    t0 = time.monotonic()
    r = pod_env.run("join", "-d", "--name", "web", "p", "--", "sh", "-c",
                    "echo out1; echo err1 >&2; read x; echo \"stdin:$x\"; sleep 30", check=True)
    assert time.monotonic() - t0 < 5
    assert r.stdout == "web\n"
    m = wait_state(pod_env, "p", "web", "running")
    assert live_pids([m["pid"]]) == [m["pid"]]  # type: ignore[list-item]
    deadline = time.monotonic() + 10
    while "stdin:" not in pod_env.run("logs", "p", "web").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = pod_env.run("logs", "p", "web", check=True)
    assert r.stdout == "out1\nstdin:\n"  # stdin is /dev/null: read got nothing
    assert r.stderr == "err1\n"
    r = pod_env.run("logs", "--tail", "1", "p", "web", check=True)
    assert r.stdout + r.stderr in ("stdin:\n", "err1\n")
    r = pod_env.run("logs", "--timestamps", "p", "web", check=True)
    assert re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \S+\n)+", r.stdout), r.stdout


def test_generated_names_are_unique_and_a_running_name_is_refused(pod_env: PodEnv) -> None:
    pod_env.create("p")
    a = pod_env.run("join", "-d", "p", "--", "sleep", "30", check=True).stdout.strip()
    b = pod_env.run("join", "-d", "p", "--", "sleep", "30", check=True).stdout.strip()
    assert a != b and a.startswith("sleep-")
    pod_env.run("join", "-d", "--name", "one", "p", "--", "sleep", "30", check=True)
    r = pod_env.run("join", "-d", "--name", "one", "p", "--", "sleep", "30")
    assert r.returncode == 125 and 'member "one" already exists' in r.stderr
    r = pod_env.run("join", "-d", "--name", "../x", "p", "--", "true")
    assert r.returncode == 2


def test_ps_records_statuses_after_nspod_is_gone(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "-d", "--name", "three", "p", "--", "sh", "-c", "exit 3", check=True)
    pod_env.run("join", "-d", "--name", "victim", "p", "--", "sleep", "30", check=True)
    assert pod_env.run("join", "p", "--", "sh", "-c", "exit 5").returncode == 5
    m = wait_state(pod_env, "p", "victim", "running")
    os.kill(m["pid"], 9)  # type: ignore[arg-type]
    wait_state(pod_env, "p", "victim", "killed (SIGKILL)")
    three = wait_state(pod_env, "p", "three", "exited (3)")
    assert three["finished"] and three["started"] <= three["finished"]  # type: ignore[operator]
    members = ps(pod_env, "p")
    # a foreground member's status went to its join: it leaves no record
    assert [m for m in members.values() if m["command"] == ["sh", "-c", "exit 5"]] == []
    table = pod_env.run("ps", "p", check=True).stdout
    assert table.splitlines()[0].split()[:4] == ["NAME", "PID", "POD", "PID"]
    assert "exited (3)" in table and "killed (SIGKILL)" in table


def test_logs_follow_until_the_member_ends(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "-d", "--name", "tick", "p", "--", "sh", "-c",
                "for i in 1 2 3; do echo $i; sleep 0.3; done", check=True)
    t0 = time.monotonic()
    r = pod_env.run("logs", "-f", "p", "tick", check=True, timeout=20)
    assert r.stdout == "1\n2\n3\n"
    assert time.monotonic() - t0 < 10


def test_stop_is_fast_when_members_exit_on_term(pod_env: PodEnv) -> None:
    pod_env.create("p")
    for i in range(5):
        pod_env.run("join", "-d", "--name", f"m{i}", "p", "--", "sleep", "60", check=True)
    pod_env.run("join", "-d", "--name", "tree", "p", "--", "sh", "-c",
                "sleep 60 & sleep 60 & wait", check=True)
    t0 = time.monotonic()
    pod_env.run("stop", "p", check=True)  # default grace 10 s: must not wait for it
    assert time.monotonic() - t0 < 3
    members = ps(pod_env, "p")
    assert all(m["state"] != "running" for m in members.values()), members
    assert members["m0"]["state"] == "killed (SIGTERM)"


def test_stop_kills_what_ignores_term_after_the_grace_period(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "-d", "--name", "stubborn", "p", "--", "sh", "-c",
                "trap '' TERM; while :; do sleep 0.1; done", check=True)
    wait_state(pod_env, "p", "stubborn", "running")
    t0 = time.monotonic()
    pod_env.run("stop", "-t", "1", "p", check=True)
    took = time.monotonic() - t0
    assert 0.9 < took < 4, took
    assert ps(pod_env, "p")["stubborn"]["state"] == "killed (SIGKILL)"


def test_start_and_restart_bring_a_stopped_pod_back(pod_env: PodEnv) -> None:
    pod_env.create("p", "--hostname", "box")
    old = pod_env.inspect("p")["pid"]
    pod_env.run("stop", "-t", "0", "p", check=True)
    assert pod_env.run("join", "p", "--", "true").returncode == 125
    assert pod_env.run("start", "p", check=True).stdout == "p\n"
    info = pod_env.inspect("p")
    assert info["state"] == "running" and info["pid"] != old
    assert pod_env.run("join", "p", "--", "hostname", check=True).stdout == "box\n"
    r = pod_env.run("start", "p")
    assert r.returncode == 125 and "already running" in r.stderr
    mid = info["pid"]
    pod_env.run("restart", "-t", "0", "p", check=True)
    info = pod_env.inspect("p")
    assert info["state"] == "running" and info["pid"] not in (old, mid)
    assert live_pids([old, mid]) == []  # type: ignore[list-item]


def test_kill_signals_one_member_or_all(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "-d", "--name", "a", "p", "--", "sleep", "60", check=True)
    pod_env.run("join", "-d", "--name", "b", "p", "--", "sleep", "60", check=True)
    pod_env.run("kill", "-s", "TERM", "p", "a", check=True)
    wait_state(pod_env, "p", "a", "killed (SIGTERM)")
    assert ps(pod_env, "p")["b"]["state"] == "running"
    r = pod_env.run("kill", "p", "a")
    assert r.returncode == 125 and "not running" in r.stderr
    pod_env.run("kill", "-s", "USR1", "p", check=True)
    wait_state(pod_env, "p", "b", "killed (SIGUSR1)")
    assert pod_env.inspect("p")["state"] == "running"  # pause is spared
    assert pod_env.run("kill", "-s", "NOPE", "p").returncode == 2


def test_a_recycled_pid_is_never_signalled(pod_env: PodEnv) -> None:
    pod_env.create("p")
    pod_env.run("join", "-d", "--name", "a", "p", "--", "sleep", "60", check=True)
    rec_path = pod_env.root / "pods" / "p" / "members" / "a.json"
    rec = json.loads(rec_path.read_text())
    rec["pid_start"] += 1  # as if the pid now belonged to another process
    rec_path.write_text(json.dumps(rec))
    r = pod_env.run("kill", "p", "a")
    assert r.returncode == 125
    assert live_pids([rec["host_pid"]]) == [rec["host_pid"]]


def test_foreground_tty(pod_env: PodEnv) -> None:
    if shutil.which("script") is None:
        pytest.skip("script(1) missing")
    pod_env.create("p")
    cmd = f"stty rows 33 cols 101; {NSPOD} join -t p -- sh -c 'tty; stty size'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], env=pod_env.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    assert re.search(r"/dev/pts/\d+", r.stdout) and "33 101" in r.stdout, r.stdout
    r = pod_env.run("join", "-it", "p", "--", "sh", input="echo hi-$((1+2))\nexit 3\n")
    assert r.returncode == 3 and "hi-3" in r.stdout


def test_gc_frees_dead_pods_and_leaves_the_rest(pod_env: PodEnv) -> None:
    for n in ("alive", "stopped", "dead"):
        pod_env.create(n)
    pod_env.run("stop", "-t", "0", "stopped", check=True)
    dead_pid = pod_env.inspect("dead")["pid"]
    os.kill(dead_pid, 9)  # type: ignore[arg-type]
    while live_pids([dead_pid]):  # type: ignore[list-item]
        time.sleep(0.01)
    # the light gc of ls marks it exited and frees its mounts, but keeps the record
    assert "exited" in pod_env.run("ls", check=True).stdout
    assert str(pod_env.root / "pods" / "dead") not in Path("/proc/self/mounts").read_text()
    assert pod_env.run("gc", check=True).stdout == "dead\n"
    states = {p["name"]: p["state"] for p in json.loads(pod_env.run("ls", "--json").stdout)}
    assert states == {"alive": "running", "stopped": "stopped"}
    assert not (pod_env.root / "pods" / "dead").exists()


@pytest.mark.parametrize("step", ["dir", "pause", "namespaces", "record"])
def test_gc_cleans_up_after_a_create_killed_at_each_step(pod_env: PodEnv, step: str) -> None:
    env = dict(pod_env.env, NSPOD_KILL_AT=step)
    r = subprocess.run([str(NSPOD), "create", "crashy"], env=env, capture_output=True,
                       timeout=30)
    assert r.returncode == -9
    pod_env.run("gc", check=True)
    if step == "record":  # killed after its last step: a whole pod, which gc leaves alone
        assert pod_env.inspect("crashy")["state"] == "running"
        pod_env.run("rm", "-f", "crashy", check=True)
    assert not (pod_env.root / "pods" / "crashy").exists()
    assert str(pod_env.root) not in Path("/proc/self/mounts").read_text()
    assert pauses_under(pod_env.root) == []
