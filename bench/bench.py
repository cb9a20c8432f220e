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
import fcntl
import json
import os
import re
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

try:  # the networking figures plug in from beside this file (issue 4)
    import net_bench  # noqa: E402
except ImportError:  # pragma: no cover - before networking was merged
    net_bench = None  # type: ignore[assignment]
import image_bench  # noqa: E402 - the image figures (issue 15)
import lifecycle_bench  # noqa: E402

# names of this run's own (another session's bench on the machine keeps to its own)
BRIDGE, SUBNET, TABLE = f"nsbench{os.getpid() % 100000}", "10.198.0.0/16", \
    f"nspod_bench{os.getpid()}"
ROOT_PREFIX = "nspod-bench-"  # every state root of the bench: /run/nspod-bench-*
HAND_PREFIX = f"nspod-bench-hand-{os.getpid()}-"  # this run's hand-made pods
LOCK = Path("/run/nspod-bench.lock")
SAMPLES: dict[str, list[float]] = {}  # figure -> every run, in ms (into bench.json)
NOTES: list[str] = []  # what was skipped and why, printed under the table


@contextmanager
def world() -> Iterator[dict[str, str]]:
    """A state root, bridge, subnet and table of the bench's own; all removed after."""
    # under /run, a tmpfs, like nspod's default root /run/nspod
    root = tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/run" if os.path.isdir("/run") else None)
    Path(root, "bench.owner").write_text(f"{os.getpid()}\n")
    # what outlives a reboot goes to disk, as /var/lib/nspod does
    storage = tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/var/tmp")
    env = dict(os.environ, NSPOD_ROOT=root, NSPOD_BRIDGE=BRIDGE, NSPOD_SUBNET=SUBNET,
               NSPOD_NFT_TABLE=TABLE, NSPOD_STORAGE=storage)
    try:
        yield env
    finally:
        remove_root(Path(root), env)
        shutil.rmtree(storage, ignore_errors=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True)


def remove_root(root: Path, env: dict[str, str]) -> None:
    """Removes every pod of a bench root through nspod, then whatever nspod could not."""
    pods = subprocess.run([NSPOD, "ls", "-q"], env=env, capture_output=True, text=True)
    names = pods.stdout.split()
    for i in range(0, len(names), 50):
        subprocess.run([NSPOD, "rm", "-f", "-t", "0", *names[i:i + 50]], env=env,
                       capture_output=True)
    subprocess.run([NSPOD, "gc"], env=env, capture_output=True)
    # networks: bridge, rules and the ip_forward hold go through nspod
    nets = subprocess.run([NSPOD, "network", "ls", "-q"], env=env, capture_output=True, text=True)
    for net in nets.stdout.split() if nets.returncode == 0 else []:
        subprocess.run([NSPOD, "network", "rm", "-f", "-t", "0", net], env=env,
                       capture_output=True)
    for pidfile in root.glob("pods/*/pause.pid"):  # a half-made pod nspod no longer knows
        try:
            pid, start = (int(x) for x in pidfile.read_text().split()[:2])
        except (OSError, ValueError):
            continue
        if _start_time(pid) == start:
            os.kill(pid, signal.SIGKILL)
    for target in reversed(mounts_under(root)):
        subprocess.run(["umount", "-l", target], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    return [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(prefix)]


def sweep_stale_roots() -> None:
    """Removes the roots of bench runs that died (SIGKILL, reboot of the tool) before ours."""
    for root in Path("/run").glob(ROOT_PREFIX + "*"):
        try:
            owner = int((root / "bench.owner").read_text())
        except (OSError, ValueError):
            continue  # not ours to judge
        if owner != os.getpid() and _start_time(owner) is None:
            print(f"bench: removing the leftovers of a dead run: {root}", file=sys.stderr)
            bridge, table = f"nsbench{owner % 100000}", f"nspod_bench{owner}"
            remove_root(root, dict(os.environ, NSPOD_ROOT=str(root), NSPOD_BRIDGE=bridge,
                                   NSPOD_SUBNET=SUBNET, NSPOD_NFT_TABLE=table))
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


def _own_roots() -> list[Path]:
    """This run's state roots (bench.owner holds our pid); other runs' are theirs."""
    out = []
    for p in Path("/run").glob(ROOT_PREFIX + "*"):
        try:
            if int((p / "bench.owner").read_text()) == os.getpid():
                out.append(p)
        except (OSError, ValueError):
            continue
    return out


def leaks() -> list[str]:
    """What this run left on the machine: mounts, roots, links, tables.

    Only this run's: another bench running beside it (another session's,
    nspod_benchc0, ...) has its own pid in every name it makes.
    """
    roots = _own_roots()
    prefixes = tuple(f"{r}/" for r in roots) + (f"/tmp/{HAND_PREFIX}",)
    found = [f"mount {line.split()[1]}" for line in
             Path("/proc/self/mounts").read_text().splitlines()
             if line.split()[1].startswith(prefixes)]
    found += [f"state root {p}" for p in roots]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {w}" for w in links.split()
              if w.rstrip(":").split("@")[0] == BRIDGE or w.startswith("nsbh")]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [f"nft {t.strip()}" for t in tables.splitlines() if t.split()[-1:] == [TABLE]]
    netns = Path("/run/netns")
    found += [f"netns {p.name}" for p in netns.glob("nsbh-*")] if netns.is_dir() else []
    return found


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000.0


def median_ms(fn: Callable[[], float], runs: int, key: str = "") -> float:
    """The median of `runs` calls of fn (ms); every run is kept under key for bench.json."""
    times = [fn() for _ in range(runs)]
    if key:
        SAMPLES[key] = [round(t, 3) for t in times]
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], float]], runs: int) -> dict[str, float]:
    """Medians (ms) of several commands timed in turns, run by run."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            times[key].append(fn())
    for key, ts in times.items():
        SAMPLES[key] = [round(t, 3) for t in ts]
    return {key: statistics.median(ts) for key, ts in times.items()}


def _until_ok(cmd: list[str], tries: int = 5) -> None:
    """Runs cmd until it succeeds (a container just started may not take exec yet)."""
    for i in range(tries):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(0.2 * (i + 1))
    raise subprocess.CalledProcessError(r.returncode, cmd, r.stdout, r.stderr)


def _help(verb: str) -> str:
    r = subprocess.run([NSPOD, verb, "--help"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def supports(verb: str, option: str = "") -> bool:
    """Whether this nspod has the verb (and option): features merged from other issues."""
    text = _help(verb)
    return bool(text) and (not option or re.search(rf"(^|[ ,]){re.escape(option)}([ ,=]|$)",
                                                   text, re.M) is not None)


def _why(e: BaseException) -> str:
    if isinstance(e, subprocess.CalledProcessError):
        err = (e.stderr or b"")
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {e.returncode}"
        return f"{' '.join(map(str, e.cmd[:4]))}: {last}"[:200]
    return str(e)[:200]


NO_NET: list[str] = []  # `--net none` once networking is there: the core figures need no bridge
HAS_PUBLISH = False  # create -p: scale and gc pods publish a port each, as a real host's do


def free_port() -> int:
    if net_bench is not None:
        return int(net_bench.free_port())
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def PUBLISH() -> list[str]:  # noqa: N802 - reads as the constant it stands for
    return ["-p", f"{free_port()}:80"] if HAS_PUBLISH else []


def nspod(env: dict[str, str], *args: str) -> str:
    return subprocess.run([NSPOD, *args], env=env, check=True, capture_output=True,
                          text=True).stdout


def inspect(env: dict[str, str], pod: str) -> dict[str, object]:
    return json.loads(nspod(env, "inspect", pod))[0]  # type: ignore[no-any-return]


# -- join -------------------------------------------------------------------------


def bench_join(runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with world() as env:
        nspod(env, "create", *NO_NET, "j")
        pid = str(inspect(env, "j")["pid"])
        timed([NSPOD, "join", "j", "--", "true"], env)  # warm the page cache
        # interleaved, so a burst of load elsewhere on the machine hits all alike
        fns = {
            "join_ms": lambda: timed([NSPOD, "join", "j", "--", "true"], env),
            "nsenter_ms": lambda: timed(["nsenter", "-t", pid, "-a", "true"]),
            "python_pass_ms": lambda: timed([PYTHON, "-c", "pass"]),
        }
        if supports("join", "--security-opt"):  # the same join without its seccomp filter
            fns["join_unconfined_ms"] = lambda: timed(
                [NSPOD, "join", "--security-opt", "seccomp=unconfined", "j", "--", "true"], env)
        out.update(interleaved(fns, runs))
        rootfs = str(REPO / "tests" / "rootfs")
        if not supports("join", "--rootfs"):
            NOTES.append("join --rootfs: skipped, nspod has no --rootfs (issue 5)")
        elif os.path.isdir(rootfs):
            # the pod has had members on the host's files: mixing needs saying so (issue 18)
            mix = ["--mix-roots"] if supports("join", "--mix-roots") else []
            out["join_rootfs_ms"] = median_ms(
                lambda: timed([NSPOD, "join", *mix, "--rootfs", rootfs, "j", "--", "/bin/true"],
                              env),
                runs, "join_rootfs_ms")
        else:
            NOTES.append("join --rootfs: skipped, tests/rootfs missing (make setup)")
    if USE_PODMAN:
        name = "nspod-bench-exec"
        subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True)
        try:
            subprocess.run(["podman", "pod", "create", "--name", name], check=True,
                           capture_output=True)
            subprocess.run(["podman", "pod", "start", name], check=True, capture_output=True)
            infra = subprocess.run(["podman", "pod", "inspect", name, "--format",
                                    "{{.InfraContainerID}}"], capture_output=True, text=True)
            cid = infra.stdout.strip()
            _until_ok(["podman", "exec", cid, "/catatonit", "-V"])  # the infra is up
            out["podman_exec_ms"] = median_ms(
                lambda: timed(["podman", "exec", cid, "/catatonit", "-V"]), min(runs, 10),
                "podman_exec_ms")
            rootfs = str(REPO / "tests" / "rootfs")
            if os.path.isdir(rootfs):
                out["podman_run_rootfs_ms"] = median_ms(
                    lambda: timed(["podman", "run", "--rm", "--pod", name, "--rootfs", rootfs,
                                   "/bin/true"]), min(runs, 10), "podman_run_rootfs_ms")
        except (subprocess.CalledProcessError, OSError) as e:
            NOTES.append(f"podman exec: skipped, {_why(e)}")
        finally:
            subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True)
    return out


def bench_image_figures(runs: int) -> dict[str, float]:
    with world() as env:
        return image_bench.bench_images(NSPOD, env, runs, USE_PODMAN, NOTES, SAMPLES)


# -- seccomp ----------------------------------------------------------------------------


def bench_seccomp(runs: int) -> dict[str, float]:
    """What the default filter costs, in-process: compiling it (once per pod, at create),
    what a join pays (reading the compiled filter, loading it) and a syscall under it."""
    from nspod import seccomp, security, syscalls

    caps = security.resolve(security.SecurityOpts(), security.SecurityOpts()).caps

    def compile_once() -> float:
        t = time.perf_counter()
        profile = seccomp.load_profile(seccomp.DEFAULT_PROFILE)
        seccomp.compile_profile(profile, seccomp.cap_names(caps), "default")
        return (time.perf_counter() - t) * 1000.0

    def in_child(pdir: str, then: list[str] | None = None) -> float:
        """ms for a forked child to read pdir's compiled filter and load it (then exec)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                t = time.perf_counter()
                got = seccomp.member_filter(pdir, None, None, caps, False)
                assert got is not None
                syscalls.seccomp_load(got[1], got[0])
                os.write(w, b"%f" % ((time.perf_counter() - t) * 1000.0))
                if then:
                    null = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(null, 2)
                    os.execv(then[0], then)
            finally:
                os._exit(0)
        os.close(w)
        took = float(os.read(r, 64) or b"nan")
        os.close(r)
        os.waitpid(pid, 0)
        return took

    out = {"seccomp_compile_ms": median_ms(compile_once, runs, "seccomp_compile_ms")}
    with tempfile.TemporaryDirectory(prefix="nspod-seccomp-bench-") as pdir:
        seccomp.prepare_pod(pdir, {})
        out["seccomp_join_cost_ms"] = median_ms(lambda: in_child(pdir), runs,
                                                "seccomp_join_cost_ms")
        # a syscall-bound program (1M reads and writes of one byte) with and without it
        dd = ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=1000000"]

        def filtered() -> float:
            t = time.perf_counter()
            in_child(pdir, dd)
            return (time.perf_counter() - t) * 1000.0

        out.update(interleaved({
            "dd_filtered_ms": filtered,
            "dd_unfiltered_ms": lambda: timed(dd),
        }, min(runs, 5)))
    return out


# -- create + rm, core ----------------------------------------------------------------


def bench_core_cycle(runs: int) -> dict[str, float]:
    """`nspod create --net none` + `rm` vs the same namespaces made by hand with unshare."""
    out: dict[str, float] = {}
    with world() as env:
        def cycle() -> float:
            return (timed([NSPOD, "create", *NO_NET, "c"], env)
                    + timed([NSPOD, "rm", "-f", "-t", "0", "c"], env))

        cycle()
        out["create_rm_none_ms"] = median_ms(cycle, runs, "create_rm_none_ms")
    out["by_hand_unshare_ms"] = median_ms(_by_hand_unshare, runs, "by_hand_unshare_ms")
    return out


def _by_hand_unshare() -> float:
    """unshare's own pod: pid/uts/ipc/mnt/net namespaces with a sleeping PID 1,
    pinned by bind mounts as nspod does, then killed and unpinned."""
    d = tempfile.mkdtemp(prefix=HAND_PREFIX, dir="/tmp")
    kinds = ("ipc", "uts", "net", "pid", "mnt")
    proc: subprocess.Popen[bytes] | None = None
    try:
        # pins go on a private mount, as `ip netns` does for /run/netns: on a
        # systemd host /tmp is shared and a mount namespace pin there fails
        subprocess.run(["mount", "--bind", d, d], check=True)
        subprocess.run(["mount", "--make-private", d], check=True)
        t = time.perf_counter()
        proc = subprocess.Popen(["unshare", "--pid", "--fork", "--uts", "--ipc", "--mount",
                                 "--net", "--mount-proc", "--propagation", "private",
                                 "sleep", "infinity"], stderr=subprocess.DEVNULL)
        child = _child_of(proc.pid)
        for kind in kinds:
            Path(d, kind).touch()
            subprocess.run(["mount", "--bind", f"/proc/{child}/ns/{kind}", f"{d}/{kind}"],
                           check=True)
        # unshare --fork makes sleep PID 1 of the new PID namespace: killing it ends the pod
        os.kill(child, signal.SIGKILL)
        proc.wait()
        for kind in kinds:
            subprocess.run(["umount", "-l", f"{d}/{kind}"], check=True)
        return (time.perf_counter() - t) * 1000.0
    finally:
        if proc is not None and proc.poll() is None:
            for pid in (_children(proc.pid) + [proc.pid]):
                _kill_quiet(pid)
            proc.wait()
        for target in [*reversed(mounts_under(Path(d))), d]:
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _child_of(pid: int, timeout: float = 5.0) -> int:
    """The first child of pid (unshare --fork's PID 1), waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = _children(pid)
        if kids:
            return kids[0]
        time.sleep(0.0005)
    raise RuntimeError(f"pid {pid} started no child")


def _kill_quiet(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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


PODMAN_BRIDGE = "cni-podman0"


def podman_bridge_exists() -> bool:
    proc = subprocess.run(["ip", "link", "show", PODMAN_BRIDGE], capture_output=True)
    return proc.returncode == 0


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
        return {"podman_cycle_ms": median_ms(cycle, min(runs, 10), "podman_cycle_ms")}
    except (subprocess.CalledProcessError, OSError) as e:
        NOTES.append(f"podman pod create -p: skipped, {_why(e)}")
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
    try:
        child = _child_of(proc.pid)
    except RuntimeError:
        _kill_quiet(proc.pid)
        proc.wait()
        raise RuntimeError(f"{argv[0]} did not start") from None
    time.sleep(0.2)  # let it reach its sleep
    return proc, child


def bench_memory() -> dict[str, float]:
    out: dict[str, float] = {}
    with world() as env:
        nspod(env, "create", *NO_NET, "m")
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
            _kill_quiet(child)
            _kill_quiet(proc.pid)
            proc.wait()
    return out


# -- scale, stop, gc ---------------------------------------------------------------------


def _mount_objects() -> int:
    """Mounts alive on the machine, every namespace's: the mnt_cache slab's objects."""
    for line in Path("/proc/slabinfo").read_text().splitlines():
        if line.startswith("mnt_cache "):
            return int(line.split()[1])
    return 0


def _unreclaimable_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SUnreclaim:"):
            return int(line.split()[1])
    return 0


def bench_scale(pods: int, samples: int) -> tuple[dict[str, float], list[tuple[int, float]]]:
    """Create time of the 1st pod vs the Nth with N-1 running; and every fill-up create.

    Also what the pods cost the kernel in mounts (issue 12: each pause's mount
    namespace once copied every earlier pod's pins, quadratic growth).
    """
    curve: list[tuple[int, float]] = []
    mounts0, slab0 = _mount_objects(), _unreclaimable_kb()
    with world() as env:
        timed([NSPOD, "create", *PUBLISH(), "warm"], env)
        timed([NSPOD, "rm", "-f", "-t", "0", "warm"], env)

        def sample(tag: str) -> float:
            times = []
            for i in range(samples):
                times.append(timed([NSPOD, "create", *PUBLISH(), f"{tag}{i}"], env))
                timed([NSPOD, "rm", "-f", "-t", "0", f"{tag}{i}"], env)
            SAMPLES[f"create_{tag}_ms"] = [round(t, 3) for t in times]
            return statistics.median(times)

        first = sample("first")
        for i in range(pods - 1):
            curve.append((i, timed([NSPOD, "create", *PUBLISH(), f"s{i}"], env)))
        mounts, slab = _mount_objects(), _unreclaimable_kb()
        # pause's root is an empty detached tmpfs, so its mountinfo shows nothing:
        # a member's copy of the pod's mount namespace shows what it holds
        ns_mounts = len(nspod(env, "join", f"s{pods - 2}", "--", "cat",
                              "/proc/self/mountinfo").splitlines())
        host_mounts = len(Path("/proc/self/mountinfo").read_text().splitlines())
        last = sample("last")
    out = {"create_1st_ms": first, "create_nth_ms": last, "scale_pods": pods,
           "scale_mount_objects": mounts, "scale_mount_objects_before": mounts0,
           "scale_mounts_per_pod": (mounts - mounts0) / max(1, pods - 1),
           "scale_last_pod_ns_mounts": ns_mounts, "scale_host_ns_mounts": host_mounts,
           "scale_unreclaimable_slab_kb": slab, "scale_unreclaimable_slab_kb_before": slab0}
    # the fill-up's own ends, a check on first/last when load elsewhere comes and goes
    k = max(1, min(20, len(curve) // 4))
    out["create_curve_head_ms"] = statistics.median(ms for _, ms in curve[:k])
    out["create_curve_tail_ms"] = statistics.median(ms for _, ms in curve[-k:])
    out["create_curve_k"] = k
    return out, curve


def bench_stop(runs: int, members: int = 10) -> dict[str, float]:
    """`nspod stop` of a pod whose members all exit on TERM."""
    with world() as env:
        def once() -> float:
            nspod(env, "create", *NO_NET, "s")
            for i in range(members):
                nspod(env, "join", "-d", "--name", f"m{i}", "s", "--", "sleep", "600")
            took = timed([NSPOD, "stop", "s"], env)
            nspod(env, "rm", "s")
            return took

        return {"stop_10_members_ms": median_ms(once, runs, "stop_10_members_ms")}


def bench_gc(dead: int) -> dict[str, float]:
    """`nspod gc` with `dead` pods whose pause was killed."""
    with world() as env:
        for i in range(dead):
            nspod(env, "create", *PUBLISH(), f"d{i}")
        for p in json.loads(nspod(env, "ls", "--json")):
            os.kill(int(p["pid"]), signal.SIGKILL)
        time.sleep(0.2)
        took = timed([NSPOD, "gc"], env)
        left = nspod(env, "ls", "-q").split()
        if left:
            raise RuntimeError(f"gc left {len(left)} pods")
        return {"gc_dead_pods": dead, "gc_ms": took}


def _oom_kills(cgroup_dirs: list[str]) -> int:
    total = 0
    for d in cgroup_dirs:
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            try:
                for line in Path(d, name).read_text().splitlines():
                    if line.split()[:1] == [key]:
                        total += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return total


def bench_soak(joins: int, detached: int = 150) -> dict[str, float]:
    """issue 12: `joins` x `join -- true` and `detached` x `join -d` into a --memory 16M pod.

    The pod must survive without an OOM kill, its directory hold a bounded
    number of files, and ps stay fast.
    """
    with world() as env:
        nspod(env, "create", *NO_NET, "--memory", "16M", "soak")
        pdir = Path(env["NSPOD_ROOT"]) / "pods" / "soak"
        t0 = time.monotonic()
        for _ in range(joins):
            subprocess.run([NSPOD, "join", "soak", "--", "true"], env=env, check=True,
                           capture_output=True)
        join_s = time.monotonic() - t0
        for _ in range(detached):
            nspod(env, "join", "-d", "soak", "--", "true")
        time.sleep(0.5)
        nspod(env, "join", "-d", "soak", "--", "true")  # the join that prunes
        ps_ms = median_ms(lambda: timed([NSPOD, "ps", "soak"], env), 5)
        view = inspect(env, "soak")
        cgroups = [str(d) for d in view.get("cgroups", [])]  # type: ignore[attr-defined]
        return {"soak_joins": joins, "soak_join_ms": join_s / max(joins, 1) * 1000,
                "soak_files": sum(1 for _ in pdir.rglob("*")),
                "soak_oom_kills": _oom_kills(cgroups), "soak_ps_ms": ps_ms,
                "soak_running": 1.0 if view["state"] == "running" else 0.0}


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

    def rel(a: str, b: str, text: str) -> str:
        """text with {} filled by a/b, or "" when either figure is missing."""
        x = ratio(a, b)
        return text.format(f"{x:.2f}") if x else ""

    j = ratio("join_ms", "python_pass_ms")
    row("nspod join POD -- true", r.get("join_ms"), "ms", f"{j:.2f}x python" if j else "",
        f"<= 2.5x python (aim 2x): {verdict(j, 2.5)}")
    if "join_unconfined_ms" in r:
        added = r["join_ms"] - r["join_unconfined_ms"]
        row("  seccomp=unconfined", r.get("join_unconfined_ms"), "ms",
            f"filter adds {added:+.2f} ms", f"<= 1 ms added: {verdict(added, 1.0)}")
    row("  seccomp: read + load", r.get("seccomp_join_cost_ms"), "ms", "in the member")
    row("  seccomp: compile (create)", r.get("seccomp_compile_ms"), "ms", "once per pod")
    d = ratio("dd_filtered_ms", "dd_unfiltered_ms")
    row("  dd, 1M 1-byte r+w, filtered", r.get("dd_filtered_ms"), "ms",
        f"{d:.2f}x unfiltered" if d else "")
    row("  dd, unfiltered", r.get("dd_unfiltered_ms"), "ms")
    row("nsenter -t PID -a true", r.get("nsenter_ms"), "ms")
    row("python -c pass (venv)", r.get("python_pass_ms"), "ms")
    row("podman exec", r.get("podman_exec_ms"), "ms",
        rel("join_ms", "podman_exec_ms", "nspod join {}x this"))
    row("nspod join --rootfs busybox", r.get("join_rootfs_ms"), "ms")
    row("podman run --rm --pod --rootfs", r.get("podman_run_rootfs_ms"), "ms",
        rel("join_rootfs_ms", "podman_run_rootfs_ms", "nspod {}x this"))
    for what, val, rat, target in image_bench.report_rows(r):
        row(what, val, "ms", rat, target)
    row("create + rm (--net none)", r.get("create_rm_none_ms"), "ms",
        rel("create_rm_none_ms", "by_hand_unshare_ms", "{}x by hand"))
    row("  by hand with unshare", r.get("by_hand_unshare_ms"), "ms")
    p = ratio("nspod_create_p_rm_ms", "podman_cycle_ms")
    row("create -p + rm (bridge)", r.get("nspod_create_p_rm_ms"), "ms",
        f"{p:.2f}x podman" if p else "podman not installed",
        f"<= 0.5x podman (aim 0.15x): {verdict(p, 0.5)}" if p else "<= 0.5x podman")
    row("  create -p", r.get("nspod_create_p_ms"), "ms")
    row("  rm -f", r.get("nspod_rm_ms"), "ms")
    row("  by hand (ip/nft/unshare)", r.get("by_hand_cycle_ms"), "ms",
        rel("nspod_create_p_rm_ms", "by_hand_cycle_ms", "nspod {}x this"))
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
    row(f"  fill-up: last {int(r.get('create_curve_k', 0))} creates",
        r.get("create_curve_tail_ms"), "ms",
        f"{ratio('create_curve_tail_ms', 'create_curve_head_ms'):.2f}x the first"
        if ratio("create_curve_tail_ms", "create_curve_head_ms") else "")
    if "scale_mount_objects" in r:
        row(f"mounts, {int(r['scale_pods'])} pods (all namespaces)", r["scale_mount_objects"], "",
            f"{r['scale_mounts_per_pod']:.1f} per pod", "linear")
        row("  the last pod's mount namespace", r["scale_last_pod_ns_mounts"], "mounts",
            f"host's: {int(r['scale_host_ns_mounts'])}")
        row("  unreclaimable slab", r["scale_unreclaimable_slab_kb"] / 1024, "MB",
            f"{r['scale_unreclaimable_slab_kb_before'] / 1024:.0f} MB before")
    row("stop, 10 members exiting on TERM", r.get("stop_10_members_ms"), "ms")
    lc = ratio("join_d_restart_ms", "join_d_ms")
    row("join -d POD -- sleep", r.get("join_d_ms"), "ms")
    row("join -d --restart always", r.get("join_d_restart_ms"), "ms",
        f"{lc:.2f}x join -d" if lc else "", f"<= 1.1x join -d: {verdict(lc, 1.1)}")
    row("join -d --health-cmd", r.get("join_d_health_ms"), "ms",
        rel("join_d_health_ms", "join_d_ms", "{}x join -d"))
    row("monitor RSS (per pod that asks)", r.get("monitor_rss_kb"), "kB",
        f"anon {r['monitor_anon_kb']:.0f} kB" if "monitor_anon_kb" in r else "")
    row("runs of a failing member in 10 s", r.get("restarts_10s_nspod"), "",
        f"podman {r['restarts_10s_podman']:.0f}" if "restarts_10s_podman" in r else "")
    row(f"gc, {int(r.get('gc_dead_pods', 0))} dead pods", r.get("gc_ms"), "ms")
    widths = [max(len(x[i]) for x in rows) for i in range(4)]
    head = ("figure (median)", "value", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip()
             for x in (head, tuple("-" * w for w in widths), *rows)]
    return "\n".join(lines)


def _in_world(fn: Callable[[dict[str, str]], dict[str, float]]) -> dict[str, float]:
    with world() as env:
        return fn(env)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def host_info() -> dict[str, object]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    return {
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "nspod": out(NSPOD, "--version"),
        "podman": out("podman", "--version") if shutil.which("podman") else None,
        "cgroup": "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def targets(r: dict[str, float]) -> dict[str, dict[str, object]]:
    """The issues' targets: (figure, reference, limit, aim); reported, never asserted."""
    out: dict[str, dict[str, object]] = {}
    for name, num, den, limit in (
        ("join <= 2.5x python -c pass (aim 2x)", "join_ms", "python_pass_ms", 2.5),
        ("create -p + rm <= 0.5x podman (aim 0.15x)", "nspod_create_p_rm_ms", "podman_cycle_ms",
         0.5),
        ("200th create <= 1.2x the 1st", "create_nth_ms", "create_1st_ms", 1.2),
    ):
        if r.get(num) and r.get(den):
            ratio = r[num] / r[den]
            out[name] = {"ratio": round(ratio, 3), "pass": ratio <= limit}
    out.update(image_bench.targets(r))
    out.update(lifecycle_bench.targets(r))
    if "join_ms" in r and "join_unconfined_ms" in r:
        added = r["join_ms"] - r["join_unconfined_ms"]
        out["seccomp filter adds <= 1 ms to join"] = {"value": round(added, 3),
                                                      "pass": added <= 1}
    if "pause_rss_kb" in r:
        out["pause RSS <= 32 kB"] = {"value": r["pause_rss_kb"], "pass": r["pause_rss_kb"] <= 32}
    return out


USE_PODMAN = False  # set by main: installed, and not --quick


def main() -> int:
    global NO_NET, HAS_PUBLISH, USE_PODMAN
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few runs, small scale (a smoke test)")
    ap.add_argument("--runs", type=int, help="runs per figure (default 30, --quick 3)")
    ap.add_argument("--pods", type=int, help="pods for the scale figure (default 300, --quick 10)")
    ap.add_argument("--scale-only", action="store_true", help="only the scale figure")
    ap.add_argument("--soak", type=int, metavar="N",
                    help="only the state soak: N joins into a --memory 16M pod (issue 12)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (sudo make bench)", file=sys.stderr)
        return 125
    runs, pods, samples, dead = (3, 10, 1, 5) if args.quick else (30, 300, 5, 100)
    runs, pods = args.runs or runs, max(args.pods or pods, 2)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # clean up as on Ctrl-C
        signal.signal(sig, _raise_interrupt)
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("bench: another nspod bench is running; waiting for it", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    sweep_stale_roots()
    if not Path(NSPOD).exists():
        print(f"bench: {NSPOD} missing (make setup)", file=sys.stderr)
        return 125
    NO_NET = ["--net", "none"] if supports("create", "--net") else []
    HAS_PUBLISH = supports("create", "--publish")
    USE_PODMAN = bool(shutil.which("podman")) and not args.quick
    had_podman_bridge = True
    if USE_PODMAN:
        podman_env()
        had_podman_bridge = podman_bridge_exists()
    elif args.quick:
        # a smoke run: podman would only leave its CNI bridge and tables behind
        NOTES.append("podman: skipped in --quick")
    else:
        NOTES.append("podman: not installed (make bench-setup): no podman figures")
    r: dict[str, float] = {}
    if args.soak is not None:
        soak = bench_soak(args.soak)
        left = leaks()
        print(json.dumps(soak, indent=2))
        if left:
            print("LEAKED: " + "; ".join(left))
        return 1 if left or soak["soak_oom_kills"] or not soak["soak_running"] else 0
    steps: list[tuple[str, str, Callable[[], dict[str, float]]]] = [
        ("join", "", lambda: bench_join(runs)),
        ("images", image_bench.missing_tools(), lambda: bench_image_figures(min(runs, 20))),
        ("seccomp", "" if supports("join", "--security-opt") else "no seccomp (issue 14)",
         lambda: bench_seccomp(min(runs, 20))),
        ("core create+rm", "", lambda: bench_core_cycle(min(runs, 20))),
        ("network create+rm", "" if HAS_PUBLISH and net_bench else
         "no create -p or bench/net_bench.py (issue 4)",
         lambda: net_bench.bench_net(NSPOD, min(runs, 20))),
        ("network by hand", "" if net_bench else "no bench/net_bench.py (issue 4)",
         lambda: net_bench.bench_by_hand(min(runs, 20))),
        ("podman", "" if USE_PODMAN else "podman not installed or --quick",
         lambda: bench_podman(runs)),
        ("memory", "", bench_memory),
        ("stop", "" if supports("join", "--detach") else "no join -d (issue 6)",
         lambda: bench_stop(min(runs, 5))),
        ("gc", "" if supports("gc") else "no nspod gc (issue 6)", lambda: bench_gc(dead)),
        ("lifecycle", "" if supports("join", "--restart") else "no --restart (issue 19)",
         lambda: _in_world(lambda env: lifecycle_bench.bench_lifecycle(
             nspod, timed, interleaved, smaps, env, NSPOD, runs))),
        ("backoff", "" if supports("join", "--restart") and not args.quick
         else "no --restart (issue 19) or --quick",
         lambda: _in_world(lambda env: lifecycle_bench.bench_backoff(
             nspod, env, str(REPO / "tests" / "rootfs"), USE_PODMAN))),
    ]
    if args.scale_only:
        steps = []
    curve: list[tuple[int, float]] = []
    failed = False
    load_before = os.getloadavg()[0]
    try:
        for name, missing, step in steps:
            if missing:
                NOTES.append(f"{name}: skipped, {missing}")
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                r.update(step())
            except (subprocess.CalledProcessError, OSError, RuntimeError, ValueError) as e:
                NOTES.append(f"{name}: FAILED, {_why(e)}")
                failed = True
        if not HAS_PUBLISH:
            NOTES.append("scale: pods without -p (no networking yet)")
        print(f"bench: scale to {pods} pods ...", file=sys.stderr, flush=True)
        try:
            scale, curve = bench_scale(pods, samples)
            r.update(scale)
        except (subprocess.CalledProcessError, OSError, RuntimeError) as e:
            NOTES.append(f"scale: FAILED, {_why(e)}")
            failed = True
    except KeyboardInterrupt:
        print("bench: interrupted; everything it made is removed", file=sys.stderr)
        return 130
    finally:
        if not had_podman_bridge and podman_bridge_exists():
            # podman made its network bridge for this run: take it away again
            subprocess.run(["ip", "link", "del", PODMAN_BRIDGE], capture_output=True)
        left = leaks()
    load = max(load_before, os.getloadavg()[0])
    if load > 0.5 * (os.cpu_count() or 1):
        NOTES.append(f"the machine was busy (load average {load:.1f} on {os.cpu_count()} CPUs):"
                     " figures are noisy, ratios of interleaved runs hold best")
    if left:
        NOTES.append("LEAKED: " + "; ".join(left))
        failed = True
    OUT.mkdir(exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps({
        "host": host_info(), "runs": runs, "results": r, "targets": targets(r),
        "samples_ms": SAMPLES, "scale_curve": curve, "notes": NOTES}, indent=2))
    print(report(r))
    for note in NOTES:
        print(f"note: {note}")
    print(f"raw: {OUT / 'bench.json'}; {plot(curve, OUT / 'scale.png')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
