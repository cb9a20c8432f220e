"""Crash consistency and damaged records (issue 12).

A verb killed at any step leaves a record that never lies (`stopped` with a
pause alive, ports listed but not published, an address shown but freed),
and the next start, rm -f or gc brings the pod to a true state. A damaged
record affects only its pod; rm -f and gc remove it with all it held.
Each test ends with the suite's leak check (the pod_env fixture).
"""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import NSPOD, PodEnv, nft_elements, pauses_under

PORT = 21300 + os.getpid() % 500


def ls_states(pod_env: PodEnv) -> dict[str, dict[str, object]]:
    r = pod_env.run("ls", "--json")
    assert "Traceback" not in r.stderr
    return {p["name"]: p for p in json.loads(r.stdout or "[]")}


def pauses_of(pod_env: PodEnv, name: str) -> list[int]:
    pdir = str(pod_env.root / "pods" / name)
    return [p for p in pauses_under(pod_env.root)
            if Path(f"/proc/{p}/environ").read_bytes().split(b"\0")[0].decode()
            == f"NSPOD_POD={pdir}"]


def address_holders(pod_env: PodEnv) -> dict[str, str]:
    d = pod_env.root / "ipam"
    return {p.name: p.read_text().strip() for p in d.glob("*")} if d.exists() else {}


def assert_truthful(pod_env: PodEnv, name: str) -> str:
    """The pod's record says what the kernel holds; returns its state (or "gone")."""
    view = ls_states(pod_env).get(name)
    if view is None:
        assert pauses_of(pod_env, name) == [], "gone, but its pause runs"
        assert name not in address_holders(pod_env).values(), "gone, but holds an address"
        assert not any(f"pod {name}" in e for e in nft_elements(pod_env.table))
        return "gone"
    state = str(view["state"])
    if state == "removing":  # an intent: rm -f or gc finishes it
        return state
    alive = pauses_of(pod_env, name)
    if state == "running":
        assert alive == [view["pid"]], f"running, pauses {alive}"
    else:
        assert alive == [], f"{state} with a pause alive"
    ip = view.get("ip")
    if ip:
        assert address_holders(pod_env).get(str(ip)) == name, f"{state}: {ip} shown but freed"
    else:
        assert name not in address_holders(pod_env).values()
    published = any(f"pod {name}" in e for e in nft_elements(pod_env.table))
    assert published == bool(view.get("ports")), f"{state}: ports {view.get('ports')}"
    return state


def killed(pod_env: PodEnv, step: str, *args: str) -> int:
    env = dict(pod_env.env, NSPOD_KILL_AT=step)
    return subprocess.run([str(NSPOD), *args], env=env, capture_output=True,
                          timeout=60).returncode


def recover(pod_env: PodEnv, name: str, state: str) -> str:
    """The next verb brings the pod to the truth: start it (or rm -f it); returns the end."""
    if state in ("stopped", "exited"):
        r = pod_env.run("start", name)
        assert r.returncode == 0, r.stderr
        assert assert_truthful(pod_env, name) == "running"
        assert pod_env.run("join", name, "--", "true").returncode == 0
        end = "start->running"
    elif state == "running":
        assert pod_env.run("join", name, "--", "true").returncode == 0
        end = "running"
    else:
        end = "rm -f->gone"
    r = pod_env.run("rm", "-f", "-t", "1", name)
    assert r.returncode == 0, r.stderr
    assert assert_truthful(pod_env, name) == "gone"
    return end


START_STEPS = ["starting", "cgroup", "pause", "namespaces", "veth", "files"]
MATRIX: list[tuple[str, str]] = (
    [("create", s) for s in ("dir", "address", "ports", "cgroup", "pause", "namespaces",
                             "veth", "files", "record")]
    + [("start", s) for s in START_STEPS + ["address", "ports"]]
    + [("restart", s) for s in ["stopping", *START_STEPS]]
    + [("stop", "stopping"), ("rm", "stopping"), ("rm", "removing"), ("gc", "gc")]
    + [("join -d", s) for s in ("claimed", "recorded", "detached")]
)


@pytest.mark.parametrize(("verb", "step"), MATRIX)
def test_verb_killed_at_each_step_leaves_a_true_record(
        pod_env: PodEnv, verb: str, step: str) -> None:
    name = "k"
    pub = ("-p", f"{PORT}:80")
    if verb == "create":
        assert killed(pod_env, step, "create", *pub, name) == -9
        pod_env.pods_seen.add(name)
        if not (pod_env.root / "pods" / name / "pod.json").exists():
            # half made, not a pod yet: the name says how to free it, and gc does
            r = pod_env.run("create", name)
            assert r.returncode == 125 and "run nspod gc" in r.stderr, r.stderr
            pod_env.run("gc", check=True)
            assert not (pod_env.root / "pods" / name).exists()
            assert assert_truthful(pod_env, name) == "gone"
            print(f"MATRIX {verb} {step}: half made -> gc -> gone")
            pod_env.create(*pub, name)  # the name and the port are free again
            pod_env.run("rm", "-f", name, check=True)
            return
        state = assert_truthful(pod_env, name)
        print(f"MATRIX {verb} {step}: {state} -> {recover(pod_env, name, state)}")
        return
    pod_env.create(*pub, name)
    pod_env.run("join", "-d", "--name", "s", name, "--", "sleep", "100", check=True)
    if verb == "start":  # from exited: the address and port claimed again
        os.kill(int(pod_env.inspect(name)["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        time.sleep(0.2)
        assert assert_truthful(pod_env, name) == "exited"
        assert killed(pod_env, step, "start", name) == -9
    elif verb == "restart":
        assert killed(pod_env, step, "restart", "-t", "1", name) == -9
    elif verb == "stop":
        assert killed(pod_env, step, "stop", "-t", "1", name) == -9
    elif verb == "rm":
        assert killed(pod_env, step, "rm", "-f", "-t", "1", name) == -9
    elif verb == "join -d":
        assert killed(pod_env, step, "join", "-d", "--name", "j", name, "--",
                      "sleep", "100") == -9
        r = pod_env.run("ps", name)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        shown = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
        if step == "claimed":  # never ran: not shown, and its name is free again
            assert "j" not in shown
        elif step == "recorded":  # killed before its go: it never execs, and ends
            time.sleep(0.2)
            lines = pod_env.run("ps", name).stdout.splitlines()
            assert [ln for ln in lines if ln.split()[0] == "j" and "running" in ln] == []
        else:  # it runs: shown so
            assert "running" in shown["j"]
            pod_env.run("kill", name, "j", check=True)
        pod_env.run("join", "-d", "--name", "j", name, "--", "true", check=True)
    elif verb == "gc":
        os.kill(int(pod_env.inspect(name)["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        time.sleep(0.2)
        assert killed(pod_env, step, "gc") == -9
        assert assert_truthful(pod_env, name) in ("releasing", "exited")
        assert pod_env.run("gc").stdout == f"{name}\n"
        assert assert_truthful(pod_env, name) == "gone"
        print(f"MATRIX {verb} {step}: releasing -> gc -> gone")
        return
    state = assert_truthful(pod_env, name)
    print(f"MATRIX {verb} {step}: {state} -> {recover(pod_env, name, state)}")


@pytest.mark.parametrize("verb", ["create", "start", "restart", "stop", "rm", "gc", "join"])
def test_verb_killed_at_random_moments(pod_env: PodEnv, verb: str) -> None:
    """Real SIGKILLs at random delays, a bounded loop: every end is true."""
    rng = random.Random(f"{verb}-{os.getpid()}")
    ends: dict[str, int] = {}
    for i in range(8):
        name = f"r{i}"
        pub = ("-p", f"{PORT + 1 + i}:80")
        if verb == "create":
            args: tuple[str, ...] = ("create", *pub, name)
        else:
            pod_env.create(*pub, name)
            if verb == "start":
                pod_env.run("stop", "-t", "0", name, check=True)
            if verb == "gc":
                os.kill(int(pod_env.inspect(name)["pid"]),  # type: ignore[call-overload]
                        signal.SIGKILL)
                time.sleep(0.1)
            args = {"start": ("start", name), "restart": ("restart", "-t", "0", name),
                    "stop": ("stop", "-t", "0", name),
                    "join": ("join", "-d", "--name", "j", name, "--", "sleep", "100"),
                    "rm": ("rm", "-f", "-t", "0", name), "gc": ("gc",)}[verb]
        pod_env.pods_seen.add(name)
        p = subprocess.Popen([str(NSPOD), *args], env=pod_env.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0, 0.1))  # most verbs take 20-100 ms here
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate(timeout=30)
        assert b"Traceback" not in err
        if verb == "join":  # the pod runs on; ps reads what the join left
            r = pod_env.run("ps", name)
            assert r.returncode == 0 and r.stderr == "", r.stderr
        if (pod_env.root / "pods" / name).exists() and not (
                pod_env.root / "pods" / name / "pod.json").exists():
            pod_env.run("gc", check=True)  # a half-made create
        state = assert_truthful(pod_env, name)
        end = "gone" if state == "gone" else recover(pod_env, name, state)
        ends[f"{state}->{end}"] = ends.get(f"{state}->{end}", 0) + 1
    print(verb, ends)


DAMAGE = {
    "truncated": '{"name": "bad", "hostna',
    "empty": "",
    "list": "[]",
    "object": "{}",
    "wrong types": '{"name": 1, "hostname": [], "created": "x", "state": {}}',
    "garbage": "\x00\xff\xfe garbage",
}


def test_hosts_files_killed_half_rewritten_name_no_removed_pod(pod_env: PodEnv) -> None:
    for name in ("a", "b", "c"):
        pod_env.create(name)

    def named_in(pod: str) -> bool:
        hosts = (pod_env.root / "pods" / pod / "etc" / "hosts").read_text()
        return any(line.split()[1:2] == ["b"] for line in hosts.splitlines() if line.strip())

    assert named_in("a") and named_in("c")
    assert killed(pod_env, "hosts-file", "rm", "-f", "-t", "0", "b") == -9
    pod_env.run("gc", check=True)
    pod_env.run("rm", "-f", "b")
    assert not named_in("a") and not named_in("c")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("remover", ["rm -f", "gc"])
def test_damaged_pod_record_affects_only_its_pod(
        pod_env: PodEnv, damage: str, remover: str) -> None:
    pod_env.create("ok")
    pod_env.create("-p", f"{PORT}:80", "bad")
    record = pod_env.root / "pods" / "bad" / "pod.json"
    record.write_bytes(DAMAGE[damage].encode("latin-1"))
    line = f'nspod: pod "bad": damaged record {record}: '
    r = pod_env.run("ls")
    assert r.returncode == 125 and r.stderr.startswith(line)
    assert r.stderr.endswith(": run nspod rm -f bad\n") and r.stderr.count("\n") == 1
    assert "ok" in r.stdout and "running" in r.stdout
    for args in (("inspect", "bad"), ("join", "bad", "--", "true"), ("start", "bad"),
                 ("rm", "bad")):
        r = pod_env.run(*args)
        assert r.returncode == 125 and r.stderr.startswith(line), args
        assert r.stderr.count("\n") == 1, args
    # every other verb on another pod is undisturbed, create included
    assert pod_env.run("join", "ok", "--", "true").returncode == 0
    pod_env.create("ok2")
    assert pod_env.run("stats", "--no-stream").returncode == 0
    if remover == "gc":
        r = pod_env.run("gc")
        assert (r.returncode, r.stdout) == (0, "bad\n"), r.stderr
    else:
        assert pod_env.run("rm", "-f", "bad").returncode == 0
    # everything it held is free: its port goes to another pod
    assert assert_truthful(pod_env, "bad") == "gone"
    assert pauses_of(pod_env, "bad") == []
    pod_env.create("-p", f"{PORT}:80", "again")
    assert set(ls_states(pod_env)) == {"ok", "ok2", "again"}


def test_gc_finds_what_pods_hold_when_the_state_root_is_deleted(pod_env: PodEnv) -> None:
    for i in range(2):
        pod_env.create("-p", f"{PORT + i}:80", f"o{i}")
    pids = pauses_under(pod_env.root)
    assert len(pids) == 2
    # the state root deleted under running pods (its mounts detached first)
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        if line.split()[1].startswith(str(pod_env.root)):
            subprocess.run(["umount", "-l", line.split()[1]], check=False)
    for d in ("pods", "ipam", "ports", "storage"):  # all of it (storage: the test keeps it here)
        subprocess.run(["rm", "-rf", str(pod_env.root / d)], check=True)
    assert pod_env.run("ls", "-q").stdout == ""
    r = pod_env.run("gc")
    assert r.returncode == 0, r.stderr
    assert pauses_under(pod_env.root) == []
    assert nft_elements(pod_env.table) == []
    links = subprocess.run(["ip", "-o", "link", "show", "master", pod_env.bridge],
                           capture_output=True, text=True).stdout
    assert links.strip() == ""


def test_gc_keeps_what_it_could_not_free_and_frees_it_next_time(pod_env: PodEnv) -> None:
    """issue 20: a failed free is never forgotten; no rule outlives its address's owner."""
    pod_env.create("-p", f"{PORT}:80", "b3")
    os.kill(int(pod_env.inspect("b3")["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    time.sleep(0.2)
    record = pod_env.root / "ports" / f"tcp-{PORT}"
    subprocess.run(["chattr", "+i", str(record)], check=True)
    try:
        r = pod_env.run("gc")
        assert r.returncode == 125 and r.stderr.startswith("nspod: gc: kept 1: b3 (")
        assert r.stderr.count("\n") == 1
        view = ls_states(pod_env)["b3"]
        assert view["state"] == "releasing"
        # its address stays its own while its port is not free
        assert address_holders(pod_env).get(str(view["ip"])) == "b3"
        r = pod_env.run("create", "-p", f"{PORT}:80", "other")
        assert r.returncode == 125 and "b3" in r.stderr
    finally:
        subprocess.run(["chattr", "-i", str(record)], check=True)
    r = pod_env.run("gc")
    assert (r.returncode, r.stdout) == (0, "b3\n"), r.stderr
    assert assert_truthful(pod_env, "b3") == "gone"
    pod_env.create("-p", f"{PORT}:80", "other")
