"""Figures of members that come back (issue 19), for bench.py.

- join -d with and without --restart / --health-cmd (interleaved medians);
- the resident size of pause and of the pod's monitor;
- restart backoff: how often a member that fails at once is run in 10 s,
  nspod against podman (`--restart always`, a busybox rootfs running `false`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

BACKOFF_WINDOW = 10.0  # seconds


def bench_lifecycle(nspod: Callable[..., str], timed: Callable[..., float],
                    interleaved: Callable[..., dict[str, float]], smaps: Callable[[int], tuple],
                    env: dict[str, str], exe: str, runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    nspod(env, "create", "--net", "none", "plain")
    nspod(env, "create", "--net", "none", "kept")
    nspod(env, "join", "-d", "--restart", "always", "kept", "--", "sleep", "600")  # its monitor
    nspod(env, "join", "-d", "plain", "--", "sleep", "600")  # warm the page cache
    n = {"i": 0}

    def join(pod: str, *opts: str) -> Callable[[], float]:
        def run() -> float:
            n["i"] += 1
            return timed([exe, "join", "-d", "--name", f"m{n['i']}", *opts, pod, "--",
                          "sleep", "600"], env)
        return run

    out.update(interleaved({
        "join_d_ms": join("plain"),
        "join_d_restart_ms": join("kept", "--restart", "always"),
        "join_d_health_ms": join("kept", "--health-cmd", "true", "--health-interval", "1h"),
    }, runs))
    root = Path(env["NSPOD_ROOT"])
    pause = json.loads((root / "pods" / "kept" / "pod.json").read_text())["pid"]
    monitor = int((root / "pods" / "kept" / "monitor.pid").read_text().split()[0])
    out["pause_rss_kb2"], _ = smaps(pause)
    out["monitor_rss_kb"], out["monitor_anon_kb"] = smaps(monitor)
    return out


def _restarts_nspod(nspod: Callable[..., str], env: dict[str, str], rootfs: str) -> float:
    nspod(env, "create", "--net", "none", "crash")
    nspod(env, "join", "-d", "--name", "c", "--restart", "always", "--rootfs", rootfs, "crash",
          "--", "/bin/false")
    time.sleep(BACKOFF_WINDOW)
    members = json.loads(nspod(env, "ps", "--json", "crash"))
    count = float(members[0]["restarts"])
    nspod(env, "rm", "-f", "-t", "0", "crash")
    return count


def _restarts_podman(rootfs: str) -> float | None:
    if not shutil.which("podman"):
        return None
    name = "nspod-bench-crash"
    subprocess.run(["podman", "rm", "-f", name], capture_output=True)
    try:
        subprocess.run(["podman", "run", "-d", "--name", name, "--restart", "always",
                        "--network", "none", "--rootfs", rootfs, "/bin/false"],
                       check=True, capture_output=True)
        time.sleep(BACKOFF_WINDOW)
        got = subprocess.run(["podman", "inspect", name, "--format", "{{.RestartCount}}"],
                             capture_output=True, text=True)
        return float(got.stdout.strip()) if got.returncode == 0 else None
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


def bench_backoff(nspod: Callable[..., str], env: dict[str, str], rootfs: str,
                  use_podman: bool) -> dict[str, float]:
    out = {"restarts_10s_nspod": _restarts_nspod(nspod, env, rootfs)}
    if use_podman:
        got = _restarts_podman(rootfs)
        if got is not None:
            out["restarts_10s_podman"] = got
    return out


def targets(r: dict[str, float]) -> dict[str, dict[str, object]]:
    """Issue 19's target, as bench.py's table judges it."""
    if not r.get("join_d_restart_ms") or not r.get("join_d_ms"):
        return {}
    ratio = r["join_d_restart_ms"] / r["join_d_ms"]
    return {"join -d --restart <= 1.1x join -d": {"ratio": round(ratio, 3), "pass": ratio <= 1.1}}
