"""nspod's benchmark: every figure the issues name, measured in one run.

    sudo make bench            (about 2-3 minutes on 2 cores)
    sudo .venv/bin/python bench/bench.py --quick     (a smoke run, seconds)

Prints medians and ratios in a table with the targets, writes the raw
numbers to bench/out/bench.json and a plot of create time against the number
of running pods to bench/out/scale.png (when matplotlib is installed: `make
bench-setup`). podman, catatonit and tini are compared when installed (`make
bench-setup` installs them). Everything runs under its own state root, bridge,
subnet and nftables table, removed at the end whatever happens. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
NSPOD = str(REPO / ".venv" / "bin" / "nspod")
PYTHON = str(REPO / ".venv" / "bin" / "python")
sys.path.insert(0, str(HERE))

import net_bench  # noqa: E402  (beside this file)

BRIDGE, SUBNET, TABLE = "nsbench1", "10.198.0.0/16", "nspod_bench1"


@contextmanager
def world() -> Iterator[dict[str, str]]:
    """A state root, bridge, subnet and table of the bench's own; all removed after."""
    # under /run, a tmpfs, like nspod's default root /run/nspod
    root = tempfile.mkdtemp(prefix="nspod-bench-", dir="/run" if os.path.isdir("/run") else None)
    env = dict(os.environ, NSPOD_ROOT=root, NSPOD_BRIDGE=BRIDGE, NSPOD_SUBNET=SUBNET,
               NSPOD_NFT_TABLE=TABLE)
    try:
        yield env
    finally:
        pods = subprocess.run([NSPOD, "ls", "-q"], env=env, capture_output=True, text=True)
        names = pods.stdout.split()
        for i in range(0, len(names), 50):
            subprocess.run([NSPOD, "rm", "-f", "-t", "0", *names[i:i + 50]], env=env,
                           capture_output=True)
        subprocess.run([NSPOD, "gc"], env=env, capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000.0


def median_ms(fn: Callable[[], float], runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def nspod(env: dict[str, str], *args: str) -> str:
    return subprocess.run([NSPOD, *args], env=env, check=True, capture_output=True,
                          text=True).stdout


def inspect(env: dict[str, str], pod: str) -> dict[str, object]:
    return json.loads(nspod(env, "inspect", pod))[0]  # type: ignore[no-any-return]


# -- join -------------------------------------------------------------------------


def bench_join(runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with world() as env:
        nspod(env, "create", "--net", "none", "j")
        pid = str(inspect(env, "j")["pid"])
        timed([NSPOD, "join", "j", "--", "true"], env)  # warm the page cache
        out["join_ms"] = median_ms(lambda: timed([NSPOD, "join", "j", "--", "true"], env), runs)
        out["nsenter_ms"] = median_ms(lambda: timed(["nsenter", "-t", pid, "-a", "true"]), runs)
        out["python_pass_ms"] = median_ms(lambda: timed([PYTHON, "-c", "pass"]), runs)
        rootfs = str(REPO / "tests" / "rootfs")
        if os.path.isdir(rootfs):
            out["join_rootfs_ms"] = median_ms(
                lambda: timed([NSPOD, "join", "--rootfs", rootfs, "j", "--", "/bin/true"], env),
                runs)
    if shutil.which("podman"):
        name = "nspod-bench-exec"
        subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True)
        try:
            subprocess.run(["podman", "pod", "create", "--name", name], check=True,
                           capture_output=True)
            subprocess.run(["podman", "pod", "start", name], check=True, capture_output=True)
            infra = subprocess.run(["podman", "pod", "inspect", name, "--format",
                                    "{{.InfraContainerID}}"], capture_output=True, text=True)
            cid = infra.stdout.strip()
            out["podman_exec_ms"] = median_ms(
                lambda: timed(["podman", "exec", cid, "/catatonit", "-V"]), min(runs, 10))
            rootfs = str(REPO / "tests" / "rootfs")
            if os.path.isdir(rootfs):
                out["podman_run_rootfs_ms"] = median_ms(
                    lambda: timed(["podman", "run", "--rm", "--pod", name, "--rootfs", rootfs,
                                   "/bin/true"]), min(runs, 10))
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"bench: podman exec skipped: {e}", file=sys.stderr)
        finally:
            subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True)
    return out


# -- create + rm, core ----------------------------------------------------------------


def bench_core_cycle(runs: int) -> dict[str, float]:
    """`nspod create --net none` + `rm` vs the same namespaces made by hand with unshare."""
    out: dict[str, float] = {}
    with world() as env:
        def cycle() -> float:
            return (timed([NSPOD, "create", "--net", "none", "c"], env)
                    + timed([NSPOD, "rm", "-f", "-t", "0", "c"], env))

        cycle()
        out["create_rm_none_ms"] = median_ms(cycle, runs)
    out["by_hand_unshare_ms"] = median_ms(_by_hand_unshare, runs)
    return out


def _by_hand_unshare() -> float:
    """unshare's own pod: pid/uts/ipc/mnt/net namespaces with a sleeping PID 1,
    pinned by bind mounts as nspod does, then killed and unpinned."""
    d = tempfile.mkdtemp(prefix="nspod-bench-hand-")
    try:
        t = time.perf_counter()
        proc = subprocess.Popen(["unshare", "--pid", "--fork", "--uts", "--ipc", "--mount",
                                 "--net", "--mount-proc", "--propagation", "private",
                                 "sleep", "infinity"])
        deadline = time.monotonic() + 5
        child = None
        while child is None and time.monotonic() < deadline:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            child = kids[0] if kids else None
        assert child is not None
        kinds = ("ipc", "uts", "net", "pid", "mnt")
        for kind in kinds:
            Path(d, kind).touch()
            subprocess.run(["mount", "--bind", f"/proc/{child}/ns/{kind}", f"{d}/{kind}"],
                           check=True)
        proc.kill()
        os.kill(int(child), signal.SIGKILL)
        proc.wait()
        for kind in kinds:
            subprocess.run(["umount", "-l", f"{d}/{kind}"], check=True)
        return (time.perf_counter() - t) * 1000.0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def podman_env() -> None:
    """podman with runc (as the issue names) and rlimits this host allows.

    podman raises RLIMIT_NOFILE to 1048576 by default, which fails without
    CAP_SYS_RESOURCE (as in a sandbox): use the current hard limits instead,
    in a containers.conf of the bench's own (CONTAINERS_CONF).
    """
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[0], 20000)
    OUT.mkdir(exist_ok=True)
    conf = OUT / "containers.conf"
    runtime = "runc" if shutil.which("runc") else "crun"
    conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", '
                    f'"nproc={nproc}:{nproc}"]\n[engine]\nruntime = "{runtime}"\n')
    os.environ["CONTAINERS_CONF"] = str(conf)


def bench_podman(runs: int) -> dict[str, float]:
    if not shutil.which("podman"):
        return {}
    name = "nspod-bench-pod"

    def cycle() -> float:
        port = str(net_bench.free_port())
        t = time.perf_counter()
        for cmd in (["podman", "pod", "create", "--name", name, "-p", f"{port}:80"],
                    ["podman", "pod", "start", name], ["podman", "pod", "rm", "-f", name]):
            subprocess.run(cmd, check=True, capture_output=True)
        return (time.perf_counter() - t) * 1000.0

    try:
        cycle()
        return {"podman_cycle_ms": median_ms(cycle, min(runs, 10))}
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"bench: podman skipped: {e}", file=sys.stderr)
        subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True)
        return {}


# -- memory -----------------------------------------------------------------------------


def smaps(pid: int) -> tuple[int, int]:
    """(Rss, Anonymous) in kB from /proc/PID/smaps_rollup."""
    vals = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Anonymous"):
            vals[key] = int(rest.split()[0])
    return vals["Rss"], vals["Anonymous"]


def _pid1_of(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Runs argv as PID 1 of a new PID namespace; returns unshare and argv's host pid."""
    proc = subprocess.Popen(["unshare", "--pid", "--fork", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if kids:
            time.sleep(0.2)  # let it reach its sleep
            return proc, int(kids[0])
        time.sleep(0.01)
    raise RuntimeError(f"{argv[0]} did not start")


def bench_memory() -> dict[str, float]:
    out: dict[str, float] = {}
    with world() as env:
        nspod(env, "create", "--net", "none", "m")
        pid = int(inspect(env, "m")["pid"])  # type: ignore[arg-type]
        nspod(env, "join", "m", "--", "sh", "-c", "for i in 1 2 3; do sleep 0.01 & done; wait")
        out["pause_rss_kb"], out["pause_anon_kb"] = smaps(pid)
    OUT.mkdir(exist_ok=True)
    glibc = OUT / "pause-glibc"
    others = {"pause_glibc": [str(glibc)]}
    if shutil.which("gcc"):
        subprocess.run(["gcc", "-Os", "-static", "-s", "-o", str(glibc),
                        str(REPO / "csrc" / "pause.c")], check=True)
    else:
        others.pop("pause_glibc")
    if shutil.which("catatonit"):
        others["catatonit"] = [shutil.which("catatonit") or "", "-P"]
    if shutil.which("tini"):
        others["tini"] = [shutil.which("tini") or "", "-s", "--", "sleep", "infinity"]
    for name, argv in others.items():
        proc, child = _pid1_of(argv)
        try:
            out[f"{name}_rss_kb"], out[f"{name}_anon_kb"] = smaps(child)
        finally:
            proc.kill()
            os.kill(child, signal.SIGKILL)
            proc.wait()
    return out


# -- scale, stop, gc ---------------------------------------------------------------------


def bench_scale(pods: int, samples: int) -> tuple[dict[str, float], list[tuple[int, float]]]:
    """Create time of the 1st pod vs the Nth with N-1 running; and every fill-up create."""
    curve: list[tuple[int, float]] = []
    with world() as env:
        port = net_bench.free_port
        timed([NSPOD, "create", "-p", f"{port()}:80", "warm"], env)
        timed([NSPOD, "rm", "-f", "-t", "0", "warm"], env)

        def sample(tag: str) -> float:
            times = []
            for i in range(samples):
                times.append(timed([NSPOD, "create", "-p", f"{port()}:80", f"{tag}{i}"], env))
                timed([NSPOD, "rm", "-f", "-t", "0", f"{tag}{i}"], env)
            return statistics.median(times)

        first = sample("first")
        for i in range(pods - 1):
            curve.append((i, timed([NSPOD, "create", "-p", f"{port()}:80", f"s{i}"], env)))
        last = sample("last")
    return {"create_1st_ms": first, "create_nth_ms": last, "scale_pods": pods}, curve


def bench_stop(runs: int, members: int = 10) -> dict[str, float]:
    """`nspod stop` of a pod whose members all exit on TERM."""
    with world() as env:
        def once() -> float:
            nspod(env, "create", "--net", "none", "s")
            for i in range(members):
                nspod(env, "join", "-d", "--name", f"m{i}", "s", "--", "sleep", "600")
            took = timed([NSPOD, "stop", "s"], env)
            nspod(env, "rm", "s")
            return took

        return {"stop_10_members_ms": median_ms(once, runs)}


def bench_gc(dead: int) -> dict[str, float]:
    """`nspod gc` with `dead` pods whose pause was killed."""
    with world() as env:
        port = net_bench.free_port
        for i in range(dead):
            nspod(env, "create", "-p", f"{port()}:80", f"d{i}")
        for p in json.loads(nspod(env, "ls", "--json")):
            os.kill(int(p["pid"]), signal.SIGKILL)
        time.sleep(0.2)
        took = timed([NSPOD, "gc"], env)
        left = nspod(env, "ls", "-q").split()
        if left:
            raise RuntimeError(f"gc left {len(left)} pods")
        return {"gc_dead_pods": dead, "gc_ms": took}


# -- report --------------------------------------------------------------------------------


def plot(curve: list[tuple[int, float]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib missing (make bench-setup): no plot"
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([n for n, _ in curve], [ms for _, ms in curve], ".", markersize=3)
    ax.set_xlabel("pods already running")
    ax.set_ylabel("nspod create -p (ms)")
    ax.set_title("create time against the number of running pods")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot: {path}"


def report(r: dict[str, float]) -> str:
    rows: list[tuple[str, str, str, str]] = []

    def row(what: str, val: float | None, unit: str, ratio: str = "", target: str = "") -> None:
        if val is not None:
            rows.append((what, f"{val:.1f} {unit}", ratio, target))

    def ratio(a: str, b: str) -> float | None:
        return r[a] / r[b] if a in r and b in r and r[b] else None

    def verdict(x: float | None, limit: float) -> str:
        return "" if x is None else ("PASS" if x <= limit else "MISS")

    j = ratio("join_ms", "python_pass_ms")
    row("nspod join POD -- true", r.get("join_ms"), "ms", f"{j:.2f}x python" if j else "",
        f"<= 2.5x python (aim 2x): {verdict(j, 2.5)}")
    row("nsenter -t PID -a true", r.get("nsenter_ms"), "ms")
    row("python -c pass (venv)", r.get("python_pass_ms"), "ms")
    row("podman exec", r.get("podman_exec_ms"), "ms",
        f"nspod join {ratio('join_ms', 'podman_exec_ms'):.2f}x this"
        if ratio("join_ms", "podman_exec_ms") else "")
    row("nspod join --rootfs busybox", r.get("join_rootfs_ms"), "ms")
    row("podman run --rm --pod --rootfs", r.get("podman_run_rootfs_ms"), "ms",
        f"nspod {ratio('join_rootfs_ms', 'podman_run_rootfs_ms'):.2f}x this"
        if ratio("join_rootfs_ms", "podman_run_rootfs_ms") else "")
    row("create + rm (--net none)", r.get("create_rm_none_ms"), "ms",
        f"{ratio('create_rm_none_ms', 'by_hand_unshare_ms'):.2f}x by hand"
        if ratio("create_rm_none_ms", "by_hand_unshare_ms") else "")
    row("  by hand with unshare", r.get("by_hand_unshare_ms"), "ms")
    p = ratio("nspod_create_p_rm_ms", "podman_cycle_ms")
    row("create -p + rm (bridge)", r.get("nspod_create_p_rm_ms"), "ms",
        f"{p:.2f}x podman" if p else "podman not installed",
        f"<= 0.5x podman (aim 0.15x): {verdict(p, 0.5)}" if p else "<= 0.5x podman")
    row("  create -p", r.get("nspod_create_p_ms"), "ms")
    row("  rm -f", r.get("nspod_rm_ms"), "ms")
    row("  by hand (ip/nft/unshare)", r.get("by_hand_cycle_ms"), "ms",
        f"nspod {ratio('nspod_create_p_rm_ms', 'by_hand_cycle_ms'):.2f}x this"
        if ratio("nspod_create_p_rm_ms", "by_hand_cycle_ms") else "")
    row("  podman pod create+start+rm", r.get("podman_cycle_ms"), "ms")
    row("pause RSS", r.get("pause_rss_kb"), "kB", "",
        f"<= 32 kB: {verdict(r.get('pause_rss_kb'), 32)}")
    row("pause anonymous", r.get("pause_anon_kb"), "kB")
    for other in ("pause_glibc", "catatonit", "tini"):
        row(f"{other} RSS", r.get(f"{other}_rss_kb"), "kB",
            f"anon {r[f'{other}_anon_kb']:.0f} kB" if f"{other}_anon_kb" in r else "")
    s = ratio("create_nth_ms", "create_1st_ms")
    row("create, 1st pod", r.get("create_1st_ms"), "ms")
    row(f"create, {int(r.get('scale_pods', 0))}th pod", r.get("create_nth_ms"), "ms",
        f"{s:.2f}x the 1st" if s else "", f"<= 1.2x: {verdict(s, 1.2)}")
    row("stop, 10 members exiting on TERM", r.get("stop_10_members_ms"), "ms")
    row(f"gc, {int(r.get('gc_dead_pods', 0))} dead pods", r.get("gc_ms"), "ms")
    widths = [max(len(x[i]) for x in rows) for i in range(4)]
    head = ("figure (median)", "value", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip()
             for x in (head, tuple("-" * w for w in widths), *rows)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few runs, small scale (a smoke test)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (sudo make bench)", file=sys.stderr)
        return 125
    runs, pods, samples, dead = (3, 10, 1, 5) if args.quick else (30, 200, 5, 100)
    if shutil.which("podman"):
        podman_env()
    r: dict[str, float] = {}
    steps: list[tuple[str, Callable[[], dict[str, float]]]] = [
        ("join", lambda: bench_join(runs)),
        ("core create+rm", lambda: bench_core_cycle(min(runs, 20))),
        ("network create+rm", lambda: net_bench.bench_net(NSPOD, min(runs, 20))),
        ("network by hand", lambda: net_bench.bench_by_hand(min(runs, 20))),
        ("podman", lambda: bench_podman(runs)),
        ("memory", bench_memory),
        ("stop", lambda: bench_stop(min(runs, 5))),
        ("gc", lambda: bench_gc(dead)),
    ]
    curve: list[tuple[int, float]] = []
    for name, step in steps:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        r.update(step())
    print(f"bench: scale to {pods} pods ...", file=sys.stderr, flush=True)
    scale, curve = bench_scale(pods, samples)
    r.update(scale)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps({"results": r, "scale_curve": curve}, indent=2))
    print(report(r))
    print(f"raw: {OUT / 'bench.json'}; {plot(curve, OUT / 'scale.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
