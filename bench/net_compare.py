"""create + rm of a bridge pod, this nspod against another build, interleaved; and what a
network's /etc/hosts entries cost a create and rm with 50 pods on the network.

    sudo .venv/bin/python bench/net_compare.py OTHER_NSPOD [RUNS]

OTHER_NSPOD is another build's command (e.g. main's .venv/bin/nspod, without networks);
each runs under its own state root, bridge, subnet and table, all removed after. Prints
medians in ms as JSON. Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NSPOD = str(HERE.parent / ".venv" / "bin" / "nspod")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def timed(nspod: str, env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    subprocess.run([nspod, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def make_env(i: int) -> dict[str, str]:
    root = tempfile.mkdtemp(prefix="nspod-bench-cmp-", dir="/run")
    return dict(os.environ, NSPOD_ROOT=root, NSPOD_BRIDGE=f"nsbc{os.getpid() % 10000}x{i}",
                NSPOD_SUBNET=f"10.197.{i}.0/24", NSPOD_NFT_TABLE=f"nspod_benchc{i}")


def clean(nspod: str, env: dict[str, str]) -> None:
    names = subprocess.run([nspod, "ls", "-q"], env=env, capture_output=True, text=True)
    for name in names.stdout.split():
        subprocess.run([nspod, "rm", "-f", "-t", "0", name], env=env, capture_output=True)
    subprocess.run([nspod, "network", "rm", "-f", "-t", "0", "nspod", "many", "other"], env=env,
                   capture_output=True)
    subprocess.run(["ip", "link", "del", env["NSPOD_BRIDGE"]], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", env["NSPOD_NFT_TABLE"]], capture_output=True)
    shutil.rmtree(env["NSPOD_ROOT"], ignore_errors=True)


def main() -> int:
    other = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    builds = {"new": NSPOD, "old": other}
    envs = {k: make_env(i) for i, k in enumerate(builds)}
    out: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    try:
        for k, nspod in builds.items():  # warm: the bridge and table exist, as on a host in use
            timed(nspod, envs[k], "create", "warm", "-p", f"{free_port()}:80")
            timed(nspod, envs[k], "rm", "-f", "warm")
        for i in range(runs):
            for k, nspod in builds.items():
                env = envs[k]
                c = timed(nspod, env, "create", f"p{i}", "-p", f"{free_port()}:80")
                r = timed(nspod, env, "rm", "-f", "-t", "0", f"p{i}")
                samples.setdefault(f"{k}_create_p_ms", []).append(c)
                samples.setdefault(f"{k}_rm_p_ms", []).append(r)
                samples.setdefault(f"{k}_create_p_rm_ms", []).append(c + r)
                c = timed(nspod, env, "create", f"q{i}")
                r = timed(nspod, env, "rm", "-f", "-t", "0", f"q{i}")
                samples.setdefault(f"{k}_create_rm_ms", []).append(c + r)
        # /etc/hosts of a network: a create rewrites every member's file. 50 pods on
        # "many"; a pod made and removed there, against one on the empty "other"
        # (the same 50 pods on the host, so only the hosts files differ)
        new = envs["new"]
        for net in ("many", "other"):
            subprocess.run([NSPOD, "network", "create", net], env=new, check=True,
                           capture_output=True)
        for i in range(50):
            timed(NSPOD, new, "create", "--net", "many", f"m{i}")
        for i in range(runs):
            for net in ("many", "other"):
                c = timed(NSPOD, new, "create", "--net", net, f"h{i}")
                r = timed(NSPOD, new, "rm", "-f", "-t", "0", f"h{i}")
                samples.setdefault(f"new_create_rm_on_{net}_ms", []).append(c + r)
    finally:
        for k, nspod in builds.items():
            clean(nspod, envs[k])
    for key, vals in samples.items():
        out[key] = round(statistics.median(vals), 1)
    for what in ("create_p_rm_ms", "create_rm_ms"):
        out[f"ratio_new_old_{what}"] = round(out[f"new_{what}"] / out[f"old_{what}"], 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
