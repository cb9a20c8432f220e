"""Networking benchmarks: functions returning numbers (bench/bench.py calls them).

Each run uses its own state root, bridge, subnet and nftables table, and
removes all of them afterwards. Needs root.

    python3 bench/net_bench.py [NSPOD] [RUNS]     prints the figures as JSON
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BRIDGE = "nsbench0"
SUBNET = "10.199.0.0/16"
TABLE = "nspod_bench"


@contextmanager
def bench_env() -> Iterator[dict[str, str]]:
    root = tempfile.mkdtemp(prefix="nspod-bench-", dir="/run" if os.path.isdir("/run") else None)
    env = dict(os.environ, NSPOD_ROOT=root, NSPOD_BRIDGE=BRIDGE, NSPOD_SUBNET=SUBNET,
               NSPOD_NFT_TABLE=TABLE)
    try:
        yield env
    finally:
        nspod = os.environ.get("NSPOD_BIN") or str(Path(__file__).resolve().parent.parent
                                                   / ".venv" / "bin" / "nspod")
        # networks (bridge, rules, the ip_forward hold) go through nspod when it has them
        subprocess.run([nspod, "network", "rm", "-f", "-t", "0", "nspod"], env=env,
                       capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_given: set[int] = set()


def free_port() -> int:
    """A port no host socket holds and this run has not published yet."""
    while True:
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port


def _run(nspod: str, env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    subprocess.run([nspod, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench_net(nspod: str, runs: int) -> dict[str, float]:
    """Medians in ms of `nspod create -p HOSTPORT:80`, `nspod rm -f`, and the cycle.

    One warm-up pod first makes the bridge and table, as a host in use has them.
    """
    creates, rms, cycles = [], [], []
    with bench_env() as env:
        _run(nspod, env, "create", "warm", "-p", f"{free_port()}:80")
        _run(nspod, env, "rm", "-f", "warm")
        for i in range(runs):
            c = _run(nspod, env, "create", f"b{i}", "-p", f"{free_port()}:80")
            r = _run(nspod, env, "rm", "-f", "-t", "0", f"b{i}")
            creates.append(c)
            rms.append(r)
            cycles.append(c + r)
    ms = 1000.0
    return {
        "nspod_create_p_ms": statistics.median(creates) * ms,
        "nspod_rm_ms": statistics.median(rms) * ms,
        "nspod_create_p_rm_ms": statistics.median(cycles) * ms,
    }


def bench_scale(nspod: str, pods: int = 200, samples: int = 5) -> dict[str, float]:
    """Create time (ms) of the 1st pod vs the Nth with N-1 others running.

    Each figure is the median of `samples` creates made at that count (each
    removed again before the next), so one slow fork does not decide it.
    """
    with bench_env() as env:
        _run(nspod, env, "create", "warm", "-p", f"{free_port()}:80")
        _run(nspod, env, "rm", "-f", "warm")

        def sample(tag: str) -> float:
            times = []
            for i in range(samples):
                times.append(_run(nspod, env, "create", f"{tag}{i}", "-p", f"{free_port()}:80"))
                _run(nspod, env, "rm", "-f", "-t", "0", f"{tag}{i}")
            return statistics.median(times) * 1000.0

        first = sample("first")
        names = [f"s{i}" for i in range(pods - 1)]
        try:
            for name in names:
                _run(nspod, env, "create", name, "-p", f"{free_port()}:80")
            last = sample("last")
        finally:
            for i in range(0, len(names), 50):
                subprocess.run([nspod, "rm", "-f", "-t", "0", *names[i:i + 50]], env=env,
                               capture_output=True)
    return {"create_1st_ms": first, f"create_{pods}th_ms": last, "ratio": last / first}


def _first_child(pid: int, timeout: float = 5.0) -> int:
    """The first child of pid (unshare --fork's PID 1), once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.0005)
    os.kill(pid, 9)
    raise RuntimeError(f"pid {pid} started no child")


def bench_by_hand(runs: int) -> dict[str, float]:
    """The same pod network made with ip/nft/unshare commands: median cycle in ms."""
    cycles = []
    with bench_env():
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", "10.199.0.1/16", "dev", BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
        subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
            f"table ip {TABLE} {{\n chain pre {{ type nat hook prerouting priority dstnat;\n }}\n"
            f" chain out {{ type nat hook output priority -100;\n }}\n}}\n"))
        for i in range(runs):
            ns, veth, port = f"nsbh-ns{i}", f"nsbh{i}", free_port()
            ip = f"10.199.1.{i % 250 + 2}"
            t = time.perf_counter()
            steps = [
                ["ip", "netns", "add", ns],
                ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                ["ip", "link", "set", veth, "master", BRIDGE, "up"],
                ["ip", "-n", ns, "link", "set", "lo", "up"],
                ["ip", "-n", ns, "link", "set", "eth0", "up"],
                ["ip", "-n", ns, "addr", "add", f"{ip}/16", "dev", "eth0"],
                ["ip", "-n", ns, "route", "add", "default", "via", "10.199.0.1"],
                ["nft", "add", "rule", "ip", TABLE, "pre", "tcp", "dport", str(port), "dnat",
                 "to", f"{ip}:80", "comment", f'"{ns}"'],
                ["nft", "add", "rule", "ip", TABLE, "out", "tcp", "dport", str(port), "dnat",
                 "to", f"{ip}:80", "comment", f'"{ns}"'],
            ]
            try:
                for cmd in steps:
                    subprocess.run(cmd, check=True)
                # the pod's PID 1 in its own namespaces; the pod runs once it exists
                pause = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--pid",
                                          "--fork", "--kill-child", "--uts", "--ipc", "--mount",
                                          "sleep", "infinity"], stderr=subprocess.DEVNULL)
                pid1 = _first_child(pause.pid)
                # the rm half: stop the process, delete the rules, the link, the netns
                os.kill(pid1, 9)
                pause.wait()
                subprocess.run(["nft", "flush", "chain", "ip", TABLE, "pre"], check=True)
                subprocess.run(["nft", "flush", "chain", "ip", TABLE, "out"], check=True)
                subprocess.run(["ip", "link", "del", veth], check=True)
                subprocess.run(["ip", "netns", "del", ns], check=True)
                cycles.append(time.perf_counter() - t)
            except BaseException:  # whatever of this round is still there
                subprocess.run(["ip", "link", "del", veth], capture_output=True)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
                raise
    return {"by_hand_cycle_ms": statistics.median(cycles) * 1000.0}


if __name__ == "__main__":
    nspod = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent
                                                      / ".venv" / "bin" / "nspod")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    out = bench_net(nspod, runs)
    out.update(bench_by_hand(runs))
    out.update(bench_scale(nspod))
    print(json.dumps(out, indent=2))
