"""Image figures (issue 15), beside bench.py: pull and join --image, against podman.

A throwaway docker-registry on 127.0.0.1 serves two images built here with
umoci: `small` (the busybox test rootfs, ~2 MB) and `large` (that plus a copy
of the interpreter's standard library, tens of MB, two layers). nspod and
podman pull the same images from it; each pull starts from an empty store.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS = REPO / "tests" / "rootfs"


def missing_tools() -> str:
    """'' when the image figures can run, else why not."""
    gone = [t for t in ("docker-registry", "skopeo", "umoci") if shutil.which(t) is None]
    if gone:
        return f"{', '.join(gone)} not installed (make setup)"
    if not (ROOTFS / "bin" / "busybox").exists():
        return "tests/rootfs missing (make setup)"
    return ""


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=300)


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return (time.perf_counter() - t) * 1000.0


@contextmanager
def registry(tags: tuple[str, ...]) -> Iterator[str]:
    """A local registry with test/bench:TAG for tags of small, large; yields 127.0.0.1:PORT."""
    d = Path(tempfile.mkdtemp(prefix="nspod-bench-registry-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {d / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    log = open(d / "registry.log", "w")
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")], stdout=log,
                            stderr=log)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        layout = d / "layout"
        _run("umoci", "init", "--layout", str(layout))
        _run("umoci", "new", "--image", f"{layout}:small")
        _run("umoci", "insert", "--image", f"{layout}:small", str(ROOTFS), "/")
        if "large" in tags:
            stdlib = Path(os.__file__).parent
            _run("umoci", "insert", "--image", f"{layout}:small", "--tag", "large", str(stdlib),
                 "/usr/lib/python")
        for tag in tags:
            _run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                 f"docker://127.0.0.1:{port}/test/bench:{tag}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def bench_images(nspod: str, env: dict[str, str], runs: int, use_podman: bool,
                 notes: list[str], samples: dict[str, list[float]]) -> dict[str, float]:
    """Pull times (nspod vs podman) and join --image vs --rootfs vs podman run --rm --pod."""
    out: dict[str, float] = {}
    storage = tempfile.mkdtemp(prefix="nspod-bench-storage-", dir="/var/tmp")
    env = dict(env, NSPOD_STORAGE=storage)

    def keep(key: str, times: list[float]) -> None:
        samples[key] = [round(t, 3) for t in times]
        out[key] = statistics.median(times)

    try:
        tags = ("small", "large") if runs >= 5 else ("small",)  # --quick: small only
        with registry(tags) as host:
            for tag in tags:
                ref = f"{host}/test/bench:{tag}"
                fns: dict[str, Callable[[], float]] = {
                    f"image_pull_{tag}_ms": lambda ref=ref: _pull_nspod(nspod, env, ref)}
                if use_podman:
                    fns[f"podman_pull_{tag}_ms"] = lambda ref=ref: _pull_podman(ref)
                times: dict[str, list[float]] = {k: [] for k in fns}
                for _ in range(max(3, min(runs, 7))):
                    for k, fn in fns.items():
                        times[k].append(fn())
                for k, ts in times.items():
                    keep(k, ts)
            ref = f"{host}/test/bench:small"
            # a pull of an image already stored (kube play's Always, a CI script's pull)
            again: dict[str, Callable[[], float]] = {
                "image_repull_ms": lambda: _timed(
                    [nspod, "image", "pull", "-q", "--tls-verify=false", ref], env)}
            if use_podman:
                again["podman_repull_ms"] = lambda: _timed(
                    ["podman", "pull", "-q", "--tls-verify=false", ref])
            times = {k: [] for k in again}
            for fn in again.values():
                fn()  # the first after the pull above: warm
            for _ in range(max(3, min(runs, 7))):
                for k, fn in again.items():
                    times[k].append(fn())
            for k, ts in times.items():
                keep(k, ts)
            if use_podman:
                subprocess.run(["podman", "rmi", "-f", ref], capture_output=True)
            subprocess.run([nspod, "image", "pull", "-q", "--tls-verify=false", ref], env=env,
                           check=True, capture_output=True)
            subprocess.run([nspod, "create", "--net", "none", "ji"], env=env, check=True,
                           capture_output=True)
            join_image = [nspod, "join", "--image", ref, "ji", "--", "/bin/true"]
            join_rootfs = [nspod, "join", "--rootfs", str(ROOTFS), "ji", "--", "/bin/true"]
            _timed(join_image, env)
            both: dict[str, list[float]] = {"join_image_ms": [], "join_rootfs_same_ms": []}
            for _ in range(runs):
                both["join_image_ms"].append(_timed(join_image, env))
                both["join_rootfs_same_ms"].append(_timed(join_rootfs, env))
            for k, ts in both.items():
                keep(k, ts)
            if use_podman:
                try:
                    keep("podman_run_image_ms", _podman_run(ref, min(runs, 10)))
                except (subprocess.CalledProcessError, OSError) as e:
                    notes.append(f"podman run --rm --pod IMAGE: skipped, {e}")
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return out


def _pull_nspod(nspod: str, env: dict[str, str], ref: str) -> float:
    t = _timed([nspod, "image", "pull", "-q", "--tls-verify=false", ref], env)
    subprocess.run([nspod, "image", "rm", ref], env=env, check=True, capture_output=True)
    return t


def _pull_podman(ref: str) -> float:
    t = _timed(["podman", "pull", "-q", "--tls-verify=false", ref])
    subprocess.run(["podman", "rmi", "-f", ref], check=True, capture_output=True)
    return t


def _podman_run(ref: str, runs: int) -> list[float]:
    name = "nspod-bench-images"
    subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True)
    try:
        subprocess.run(["podman", "pull", "-q", "--tls-verify=false", ref], check=True,
                       capture_output=True)
        subprocess.run(["podman", "pod", "create", "--name", name], check=True,
                       capture_output=True)
        subprocess.run(["podman", "pod", "start", name], check=True, capture_output=True)
        cmd = ["podman", "run", "--rm", "--pod", name, "--pull", "never", ref, "/bin/true"]
        _timed(cmd)
        return [_timed(cmd) for _ in range(runs)]
    finally:
        subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", ref], capture_output=True)


def report_rows(r: dict[str, float]) -> list[tuple[str, float | None, str, str]]:
    """(figure, value ms, ratio, target) rows for bench.py's table."""

    def ratio(a: str, b: str) -> float | None:
        return r[a] / r[b] if r.get(a) and r.get(b) else None

    rows: list[tuple[str, float | None, str, str]] = []
    for tag in ("small", "large"):
        x = ratio(f"image_pull_{tag}_ms", f"podman_pull_{tag}_ms")
        rows.append((f"image pull ({tag})", r.get(f"image_pull_{tag}_ms"),
                     f"{x:.2f}x podman" if x else "",
                     f"<= 1x podman: {'PASS' if x <= 1 else 'MISS'}" if x else ""))
        rows.append((f"  podman pull ({tag})", r.get(f"podman_pull_{tag}_ms"), "", ""))
    x = ratio("image_repull_ms", "podman_repull_ms")
    rows.append(("image pull, already stored", r.get("image_repull_ms"),
                 f"{x:.2f}x podman" if x else "",
                 f"<= 1x podman: {'PASS' if x <= 1 else 'MISS'}" if x else ""))
    rows.append(("  podman pull, already stored", r.get("podman_repull_ms"), "", ""))
    j = ratio("join_image_ms", "join_rootfs_same_ms")
    rows.append(("join --image POD -- true", r.get("join_image_ms"),
                 f"{j:.2f}x --rootfs" if j else "",
                 f"<= 1.2x --rootfs: {'PASS' if j <= 1.2 else 'MISS'}" if j else ""))
    rows.append(("  join --rootfs (same runs)", r.get("join_rootfs_same_ms"), "", ""))
    p = ratio("join_image_ms", "podman_run_image_ms")
    rows.append(("  podman run --rm --pod IMAGE", r.get("podman_run_image_ms"),
                 f"nspod {p:.2f}x this" if p else "", ""))
    return rows


def targets(r: dict[str, float]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, num, den, limit in (
        ("join --image <= 1.2x join --rootfs", "join_image_ms", "join_rootfs_same_ms", 1.2),
        ("image pull (small) <= podman pull", "image_pull_small_ms", "podman_pull_small_ms", 1.0),
        ("image pull (large) <= podman pull", "image_pull_large_ms", "podman_pull_large_ms", 1.0),
        ("image pull, stored <= podman pull", "image_repull_ms", "podman_repull_ms", 1.0),
    ):
        if r.get(num) and r.get(den):
            x = r[num] / r[den]
            out[name] = {"ratio": round(x, 3), "pass": x <= limit}
    return out


if __name__ == "__main__":  # a quick look without the whole bench: sudo python bench/image_bench.py
    import bench  # podman as the whole bench runs it (runc, rlimits)

    if shutil.which("podman"):
        bench.podman_env()
    had_bridge = bench.podman_bridge_exists()
    nsp = str(REPO / ".venv" / "bin" / "nspod")
    root = tempfile.mkdtemp(prefix="nspod-bench-", dir="/run")
    e = dict(os.environ, NSPOD_ROOT=root)
    notes: list[str] = []
    try:
        res = bench_images(nsp, e, int(sys.argv[1]) if len(sys.argv) > 1 else 10,
                           bool(shutil.which("podman")), notes, {})
    finally:
        subprocess.run([nsp, "rm", "-f", "-t", "0", "ji"], env=e, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        if not had_bridge and bench.podman_bridge_exists():  # podman run --pod made it
            subprocess.run(["ip", "link", "del", bench.PODMAN_BRIDGE], capture_output=True)
    for row in report_rows(res):
        if row[1] is not None:
            print(f"{row[0]:<32} {row[1]:8.1f} ms  {row[2]:<18} {row[3]}")
    print("\n".join(f"note: {n}" for n in notes))
