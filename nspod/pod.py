"""Pod lifecycle: create, start, stop, rm, kill, list, inspect, gc.

Orchestrates the layers below and owns rollback: each step of a create
registers its undo, so a failure at any step leaves nothing behind.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import contextlib
import os
import select
import time

from nspod import cgroups, etcfiles, lean, pins, spawn
from nspod import syscalls as sc
from nspod.errors import (
    NoSuchPod,
    NotRoot,
    NspodError,
    PodExists,
    PodNotRunning,
    UsageError,
    os_reason,
)
from nspod.security import SecurityOpts
from nspod.store import NS_KINDS, PodRecord, ProcId, Store, check_name, proc_start, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:  # each costs ms to import at run time; rm and stop must start fast
    from collections.abc import Callable, Iterable
    from typing import Any


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotRoot(f"{what}: must be run as root (try sudo)")


NET_MODES = ("bridge", "none", "host")


class CreateSpec:
    __slots__ = ("name", "hostname", "net", "ip", "ports", "dns", "add_hosts", "extra",
                 "limits", "security", "rootfs", "volumes", "read_only")

    def __init__(
        self,
        name: str | None = None,
        hostname: str | None = None,
        net: str = "bridge",  # bridge | none | host
        ip: str | None = None,  # --ip: this address rather than the next free one
        ports: tuple[Any, ...] = (),  # portmap.Publish
        dns: tuple[str, ...] = (),
        add_hosts: tuple[tuple[str, str], ...] = (),
        extra: dict[str, Any] | None = None,
        limits: cgroups.Limits | None = None,
        security: SecurityOpts | None = None,  # defaults of every join
        rootfs: str | None = None,  # default root filesystem of every join
        volumes: tuple[Any, ...] = (),  # rootfs.Volume, for every join
        read_only: bool = False,
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.net = net
        self.ip = ip
        self.ports = ports
        self.dns = dns
        self.add_hosts = add_hosts
        self.extra = extra or {}
        self.limits = limits or cgroups.Limits()
        self.security = security or SecurityOpts()
        self.rootfs = rootfs
        self.volumes = volumes
        self.read_only = read_only


def checkpoint(step: str) -> None:
    """Crash-injection hook for tests: NSPOD_FAIL_AT=STEP fails there, NSPOD_KILL_AT kills."""
    if os.environ.get("NSPOD_FAIL_AT") == step:
        raise NspodError(f"injected failure at {step}")
    if os.environ.get("NSPOD_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


CREATE_STEPS = (  # in order
    "dir", "address", "ports", "cgroup", "pause", "namespaces", "veth", "files", "record",
)


def generate_name(store: Store) -> str:
    while True:
        name = "pod-" + os.urandom(4).hex()
        if not os.path.exists(store.pod_dir(name)):
            return name


def create(store: Store, spec: CreateSpec) -> PodRecord:
    name = check_name(spec.name) if spec.name is not None else None
    hostname = spec.hostname if spec.hostname is not None else name
    if hostname is not None:
        check_name(hostname, "hostname")
    check_net(spec)
    require_root("create")
    from nspod import rootfs

    root = rootfs.check_rootfs(spec.rootfs) if spec.rootfs else None
    rootfs.check_volumes(spec.volumes)
    store.ensure()
    gc_light(store)
    if name is None:
        name = generate_name(store)
        hostname = hostname or name
    assert hostname is not None
    pdir = store.pod_dir(name)
    try:
        os.mkdir(pdir, 0o711)
    except FileExistsError:
        raise PodExists(f'pod "{name}" already exists') from None
    # The lock is held until create returns: gc leaves a pod being made alone,
    # and takes what a killed create left once the lock is free.
    with store.lock(name), contextlib.ExitStack() as undo:
        undo.callback(_remove_tree, pdir, True)
        checkpoint("dir")
        for sub in ("exits", "root", "members", "logs"):
            os.mkdir(os.path.join(pdir, sub), 0o755)
        os.chmod(os.path.join(pdir, "root"), 0o555)
        rec = PodRecord(
            name=name,
            hostname=hostname,
            created=time.time(),
            state="running",
            spec={"net": spec.net, "ip": spec.ip, "ports": [p.to_dict() for p in spec.ports],
                  "dns": list(spec.dns), "add_hosts": [list(h) for h in spec.add_hosts],
                  "rootfs": root, "volumes": [v.to_list() for v in spec.volumes],
                  "read_only": spec.read_only,
                  **spec.extra, **spec.limits.to_spec(), **spec.security.to_spec()},
        )
        if spec.net == "bridge":
            rec.net = _claim_network(store, rec, undo)
        _launch(store, rec, undo)
        store.save(rec)
        checkpoint("record")
        undo.pop_all()
    return rec


def _launch(store: Store, rec: PodRecord, undo: contextlib.ExitStack) -> None:
    """Starts the pod's pause and everything around it (create and start).

    Fills rec's runtime facts; each step registers its undo on undo.
    """
    pdir = store.pod_dir(rec.name)
    net = rec.spec.get("net", "none")
    limits = cgroups.Limits(rec.spec.get("memory"), rec.spec.get("pids"), rec.spec.get("cpus"))
    cgroup = cgroups.create(store.root, rec.name, limits)  # reuses the empty one on start
    undo.callback(cgroups.remove, cgroup)
    rec.spec["cgroups"] = cgroup
    checkpoint("cgroup")
    # pause joins the cgroup itself, before it execs, as members do (cheaper
    # than moving it by pid: see cgroups.open_procs)
    cgroup_fds = cgroups.open_procs(cgroups.children(cgroup, cgroups.PAUSE))
    try:
        pid = spawn.start_pause(
            spawn.PauseSpec(
                hostname=rec.hostname,
                records=os.path.join(pdir, "exits"),
                log=os.path.join(pdir, "pause.log"),
                new_net=net != "host",
                chroot=os.path.join(pdir, "root"),
                tag=pdir,
                hide=store.nsroot,
                prepare=lambda: cgroups.enter(cgroup_fds),
            )
        )
    finally:
        cgroups.close(cgroup_fds)
    undo.callback(spawn.kill_and_forget, pid)
    _protect_from_oom(pid)
    start = proc_start(pid)
    if start is None:
        raise NspodError(f'create pod "{rec.name}": pause exited at once (see {pdir}/pause.log)')
    # pause.pid exists while pause runs: gc_light checks these, not every record
    write_atomic(os.path.join(pdir, "pause.pid"), f"{pid} {start}\n", sync=False)
    checkpoint("pause")
    nsdir = pins.prepare(store, rec.name)
    undo.callback(pins.forget, store, rec.name)
    pins.pin(pid, nsdir, net=net != "host")
    checkpoint("namespaces")
    if net == "bridge":
        rec.net.update(_wire(store, rec.name, rec.net, os.path.join(nsdir, "net"), undo))
    etcfiles.write_files(os.path.join(pdir, "etc"), etcfiles.EtcSpec(
        name=rec.name, hostname=rec.hostname, net=net, ip=rec.net.get("ip"),
        dns=tuple(rec.spec.get("dns", ())),
        add_hosts=tuple((str(h[0]), str(h[1])) for h in rec.spec.get("add_hosts", ()))))
    checkpoint("files")
    rec.pid, rec.pid_start = pid, start
    rec.state = "running"
    rec.finished = None


def check_net(spec: CreateSpec) -> None:
    if spec.net not in NET_MODES:
        raise UsageError(f"create: --net {spec.net!r}: use one of {', '.join(NET_MODES)}")
    if spec.net != "bridge":
        for opt, given in (("--ip", spec.ip), ("-p", spec.ports)):
            if given:
                raise UsageError(f"create: {opt} needs --net bridge (not --net {spec.net})")


def _quietly(fn: Callable[..., Any], *args: Any) -> Callable[[], None]:
    """An undo step that never hides the error being rolled back."""

    def run() -> None:
        with contextlib.suppress(NspodError, OSError):
            fn(*args)

    return run


def _claim_network(store: Store, rec: PodRecord, undo: contextlib.ExitStack,
                   prefer: str | None = None) -> dict[str, Any]:
    """Address and host ports of a bridge pod, each with its undo.

    prefer: the address the pod had before (start after a crash), if still free.
    """
    from nspod import ipam, net, portmap

    name = rec.name
    subnet = ipam.subnet_from_env()
    bridge = net.bridge_from_env()
    wanted = rec.spec.get("ip")
    if wanted is None and prefer is not None:
        try:
            ip = ipam.allocate(store, subnet, name, prefer)
        except NspodError:
            ip = ipam.allocate(store, subnet, name, None)
    else:
        ip = ipam.allocate(store, subnet, name, wanted)
    undo.callback(_quietly(ipam.release, store, ip, name))
    checkpoint("address")
    table = portmap.table_from_env()
    ports = [portmap.Publish.from_dict(d) for d in rec.spec.get("ports", [])]
    if ports:
        portmap.publish(store, portmap.PortSpec(table=table, bridge=bridge, subnet=str(subnet.net),
                                                pod=name, ip=ip, ports=tuple(ports)))
        undo.callback(_quietly(portmap.unpublish, store, table, name, ports))
        checkpoint("ports")
    return {"ip": ip, "gateway": str(subnet.gateway), "prefixlen": subnet.prefixlen,
            "bridge": bridge, "table": table, "ports": [p.to_dict() for p in ports]}


def _wire(store: Store, name: str, netrec: dict[str, Any], netns: str,
          undo: contextlib.ExitStack) -> dict[str, Any]:
    from nspod import net

    veth = net.veth_name(store.root, name, netrec["bridge"])
    info = net.setup_pod(net.PodNet(bridge=netrec["bridge"], gateway=netrec["gateway"],
                                    prefixlen=netrec["prefixlen"], ip=netrec["ip"], veth=veth,
                                    netns=netns))
    undo.callback(_quietly(net.delete_link, veth))
    if netrec["ports"]:
        # The host's 127.0.0.1 reaches published ports through this bridge only
        # (ip-sysctl.rst: route_localnet); the table's guard chain, made with the
        # first published port, drops 127.0.0.0/8 arriving on other interfaces.
        net.set_bridge_sysctl(netrec["bridge"], "route_localnet", "1")
        net.set_hairpin(veth)
    checkpoint("veth")
    return {"mac": info["mac"], "veth": veth}


def release_network(store: Store, name: str, netrec: dict[str, Any]) -> None:
    """Removes a pod's rules, veth and address (in that order). Idempotent.

    The bridge and the table stay: other pods may use them, and both are
    cheap to keep; they go with `ip link del` / `nft delete table` by hand.
    """
    if not netrec:
        return
    from nspod import ipam, net, portmap

    ports = [portmap.Publish.from_dict(d) for d in netrec.get("ports", [])]
    if ports:
        portmap.unpublish(store, netrec.get("table") or portmap.table_from_env(), name, ports)
    if netrec.get("veth"):
        net.delete_link(netrec["veth"])
    if netrec.get("ip"):
        ipam.release(store, netrec["ip"], name)


def release_network_of(store: Store, name: str) -> None:
    """gc: frees what a pod with no usable record may still hold (a killed create).

    Finds its address and port records by the pod name they contain, its
    rules by their comment, and its veth by the name derived from the pod.
    """
    from nspod import ipam, net, portmap

    portmap.release_for_pod(store, portmap.table_from_env(), name)
    net.delete_link(net.veth_name(store.root, name, net.bridge_from_env()))
    ipam.release_for_pod(store, name)


def _protect_from_oom(pid: int) -> None:
    """Makes pause the last choice of the OOM killer in its cgroup, as kubelet does.

    Killing PID 1 kills the whole pod (proc(5): oom_score_adj). Best effort:
    lowering it needs CAP_SYS_RESOURCE, which a confined nspod may lack; pause
    is a few pages, the last the OOM killer picks anyway.
    """
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write("-998")


def refresh(store: Store, rec: PodRecord) -> PodRecord:
    """Marks a pod whose pause died `exited` and frees its kernel objects.

    The record stays until rm or gc, so the user sees what died.
    """
    if rec.state != "running" or rec.pause.alive():
        return rec
    with store.lock(rec.name):
        rec = store.load(rec.name)
        if rec.state == "running" and not rec.pause.alive():
            pins.forget(store, rec.name)
            with contextlib.suppress(NspodError):
                cgroups.remove(_cgroups(store, rec), timeout=0.5)
            # its address and ports go back too; start claims them again
            with contextlib.suppress(NspodError, OSError):
                release_network(store, rec.name, rec.net)
            rec.net = {"released_ip": rec.net["ip"]} if rec.net.get("ip") else {}
            _forget_pause(store.pod_dir(rec.name))
            rec.state = "exited"
            rec.finished = time.time()
            store.save(rec)
    return rec


def get(store: Store, name: str) -> PodRecord:
    return refresh(store, store.load(name))


def list_pods(store: Store) -> list[PodRecord]:
    out = []
    for name in store.names():
        try:
            out.append(get(store, name))
        except NoSuchPod:
            continue  # removed meanwhile
    return out


def inspect(store: Store, rec: PodRecord) -> dict[str, Any]:
    running = rec.state == "running"
    return {
        "name": rec.name,
        "state": rec.state,
        "pid": rec.pid if running else 0,
        "hostname": rec.hostname,
        "created": _iso(rec.created),
        "finished": _iso(rec.finished) if rec.finished else None,
        "namespaces": {
            kind: os.path.join(pins.pins_dir(store, rec.name), kind)
            for kind in NS_KINDS
            if running and (kind != "net" or rec.spec.get("net") != "host")
        },
        "net": rec.spec.get("net", "none"),
        **rec.net,
        "limits": {k: rec.spec.get(k) for k in ("memory", "pids", "cpus")},
        "security": SecurityOpts.from_spec(rec.spec).to_spec(),
        "cgroups": [d for d in _cgroups(store, rec) if os.path.isdir(d)],
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- stop / rm ------------------------------------------------------------------


def pod_processes(rec: PodRecord, nsdir: str) -> list[int]:
    """Host pids of every process in the pod's PID namespace but pause (nsdir: its pins)."""
    try:
        ino = os.stat(os.path.join(nsdir, "pid")).st_ino
    except OSError:
        return []
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == rec.pid:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/pid").st_ino == ino:
                out.append(pid)
        except OSError:
            continue
    return out


def _signal_all(pids: Iterable[int], sig: int) -> list[int]:
    """Sends sig through pidfds; returns the pidfds of those still there."""
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            signal.pidfd_send_signal(fd, sig)
            fds.append(fd)
        except OSError:
            os.close(fd)
    return fds


def _wait_fds(fds: list[int], deadline: float) -> list[int]:
    """Waits until every pidfd is readable (exited) or deadline; returns the rest."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    left = set(fds)
    while left:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            break
        for fd, _ in poller.poll(timeout * 1000):
            poller.unregister(fd)
            left.discard(fd)
            os.close(fd)
    return list(left)


def stop_pod(store: Store, name: str, timeout: float, state: str = "stopped") -> PodRecord:
    """TERM to every process of the pod, KILL after timeout, pause last."""
    require_root("stop")
    with store.lock(name):
        rec = store.load(name)
        pdir = store.pod_dir(name)
        if rec.state == "running" and rec.pause.alive():
            try:
                pause_fd = os.pidfd_open(rec.pid)
            except ProcessLookupError:
                pause_fd = -1
            if pause_fd >= 0 and proc_start(rec.pid) == rec.pid_start:
                members = pod_processes(rec, pins.pins_dir(store, name))
                left = _wait_fds(_signal_all(members, signal.SIGTERM), time.monotonic() + timeout)
                for fd in left:
                    os.close(fd)
                pause_left = [pause_fd]
                if not left:
                    # All exited: TERM lets pause reap and record them first
                    # (csrc/pause.c); a KILL would lose their exit statuses.
                    signal.pidfd_send_signal(pause_fd, signal.SIGTERM)
                    pause_left = _wait_fds(pause_left, time.monotonic() + 2)
                if pause_left:
                    # KILL pause: the kernel kills whatever is left in its PID namespace.
                    signal.pidfd_send_signal(pause_fd, signal.SIGKILL)
                    _wait_fds(pause_left, time.monotonic() + 10)
        pins.forget(store, name)
        _forget_pause(pdir)
        # The veth goes with the netns, but only once the kernel gets to it: delete
        # it now, so start can make it again under the same name at once.
        if rec.net.get("veth"):
            from nspod import net

            net.delete_link(rec.net["veth"])
        if rec.state == "running":
            rec.state = state
            rec.finished = time.time()
        store.save(rec)
        return rec


def remove_pod(store: Store, name: str, force: bool, timeout: float = 10.0) -> None:
    require_root("rm")
    rec = get(store, name)
    if rec.state == "running":
        if not force:
            raise NspodError(f'rm pod "{name}": pod is running (stop it first, or use rm -f)')
        stop_pod(store, name, timeout)
    with store.lock(name):
        pdir = store.pod_dir(name)
        if not os.path.exists(os.path.join(pdir, "pod.json")):
            raise NoSuchPod(f'pod "{name}": no such pod')
        _release_all(store, pdir)
        rec = store.load(name)
        release_network(store, name, rec.net)
        # before the state: a cgroup still busy leaves the pod for another rm to retry
        cgroups.remove(_cgroups(store, rec))
        _remove_tree(pdir)


def _cgroups(store: Store, rec: PodRecord) -> list[str]:
    """The pod's cgroup directories: as recorded, else where create makes them."""
    recorded = rec.spec.get("cgroups")
    if isinstance(recorded, list):
        return [str(d) for d in recorded]
    return cgroups.pod_dirs(cgroups.detect(), store.root, rec.name)


# -- stats ----------------------------------------------------------------------


class PodStats:
    __slots__ = ("name", "created", "usage")

    def __init__(self, name: str, created: float, usage: cgroups.Usage | None) -> None:
        self.name = name
        self.created = created
        self.usage = usage  # None: the pod has no cgroup


def stats(store: Store, names: list[str]) -> list[PodStats]:
    """Figures of the named pods (every running pod when names is empty)."""
    if names:
        recs = [get(store, n) for n in names]
        for r in recs:
            if r.state != "running":
                raise PodNotRunning(f'stats pod "{r.name}": pod is not running')
    else:
        recs = [r for r in list_pods(store) if r.state == "running"]
    return [PodStats(r.name, r.created, cgroups.usage(_cgroups(store, r))) for r in recs]


def start_pod(store: Store, name: str) -> PodRecord:
    """A stopped (or exited) pod runs again: new pause, same name and spec."""
    require_root("start")
    with store.lock(name):
        rec = store.load(name)
        if rec.state == "running" and rec.pause.alive():
            raise NspodError(f'start pod "{name}": pod is already running')
        pins.forget(store, name)
        with contextlib.ExitStack() as undo:
            if rec.spec.get("net", "bridge") == "bridge" and not rec.net.get("ip"):
                rec.net = _claim_network(store, rec, undo, prefer=rec.net.get("released_ip"))
            _launch(store, rec, undo)
            store.save(rec)
            undo.pop_all()
        return rec


def kill_pod(store: Store, name: str, sig: int) -> int:
    """Sends sig to every process of the pod but pause; returns how many got it."""
    require_root("kill")
    rec = get(store, name)
    if rec.state != "running":
        raise PodNotRunning(f'kill pod "{name}": pod is not running')
    fds = _signal_all(pod_processes(rec, pins.pins_dir(store, name)), sig)
    for fd in fds:
        os.close(fd)
    return len(fds)


# -- gc ---------------------------------------------------------------------------


def gc_light(store: Store) -> None:
    """What create does first: mark dead pods exited, free their kernel objects.

    One small file and one /proc read per running pod; a record is read only
    for a pod whose pause died, so create stays as fast with 200 pods as with
    one. (ls and inspect read every record anyway, and refresh each.)
    """
    try:
        entries = list(os.scandir(store.pods))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            pid, start = (int(x) for x in lean.read_text(os.path.join(entry.path, "pause.pid"))
                          .split())
        except (OSError, ValueError):
            continue  # stopped or exited already, or half made (gc's business)
        if proc_start(pid) == start or not os.path.exists(os.path.join(entry.path, "pod.json")):
            continue
        try:
            refresh(store, store.load(entry.name))
        except (NoSuchPod, NspodError, OSError):
            continue


def _forget_pause(pdir: str) -> None:
    try:
        os.unlink(os.path.join(pdir, "pause.pid"))
    except FileNotFoundError:
        pass


def gc(store: Store) -> list[str]:
    """Gives back everything held by pods that died on their own or were half made.

    Running pods, pods being created (their lock is held) and pods stopped by
    the user are untouched. Returns the names removed.
    """
    require_root("gc")
    removed = []
    tags = _pause_tags()  # one scan of /proc for every pod
    with contextlib.ExitStack() as locks:
        # 1. which pods: those whose lock is free and whose pause is gone
        dead: list[tuple[str, str, PodRecord | None]] = []
        for pdir in store.dirs():
            name = os.path.basename(pdir)
            if not locks.enter_context(store.try_lock(name)):
                continue  # a create or another verb is working on it
            try:
                rec: PodRecord | None = store.load(name)
            except (NoSuchPod, ValueError, OSError):
                rec = None
            if rec is not None and (
                    rec.state == "stopped" or (rec.state == "running" and rec.pause.alive())):
                continue
            for pid in _pauses_of(pdir, tags):
                spawn.kill_and_forget(pid)
            _release_all(store, pdir)
            dead.append((name, pdir, rec))
        # 2. their network, in batches: the kernel's costs are per call
        _release_networks(store, [(name, rec) for name, _, rec in dead])
        # 3. their cgroups and state
        for name, pdir, rec in dead:
            dirs = (_cgroups(store, rec) if rec is not None
                    else cgroups.pod_dirs(cgroups.detect(), store.root, name))
            with contextlib.suppress(NspodError):
                cgroups.remove(dirs)
            _remove_tree(pdir)
            removed.append(name)
    # cgroups and pins of pods whose directory is gone (a create killed before
    # it made one, an rm killed after it removed it)
    live = [os.path.basename(p) for p in store.dirs()]
    cgroups.collect_garbage(store.root, live)
    pins.collect_garbage(store, live)
    return removed


def _release_networks(store: Store, pods: list[tuple[str, PodRecord | None]]) -> None:
    """release_network for many pods: one nft transaction, one link deletion."""
    from nspod import ipam, net, portmap

    by_table: dict[str, list[tuple[str, list[Any]]]] = {}
    veths = []
    for name, rec in pods:
        if rec is None:  # half made: find what it holds by its name
            with contextlib.suppress(NspodError, OSError):
                release_network_of(store, name)
            continue
        netrec = rec.net
        ports = [portmap.Publish.from_dict(d) for d in netrec.get("ports", [])]
        if ports:
            table = netrec.get("table") or portmap.table_from_env()
            by_table.setdefault(table, []).append((name, ports))
        if netrec.get("veth"):
            veths.append(netrec["veth"])
    for table, entries in by_table.items():
        with contextlib.suppress(NspodError, OSError):
            portmap.unpublish_many(store, table, entries)
    with contextlib.suppress(NspodError, OSError):
        net.delete_links(veths)
    for name, rec in pods:
        if rec is not None and rec.net.get("ip"):
            with contextlib.suppress(NspodError, OSError):
                ipam.release(store, rec.net["ip"], name)


def _pause_tags() -> dict[str, list[int]]:
    """Pod directory -> pids of the pauses started for it (NSPOD_POD in their environment).

    pause's root is a detached tmpfs, so /proc/PID/root cannot name its pod;
    its environment, readable by root, does.
    """
    tags: dict[str, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read(4096)
        except OSError:
            continue
        if env.startswith(b"NSPOD_POD="):
            tag = env[len(b"NSPOD_POD="):].split(b"\0", 1)[0].decode(errors="replace")
            tags.setdefault(tag, []).append(int(entry.name))
    return tags


def _pauses_of(pdir: str, tags: dict[str, list[int]]) -> list[int]:
    """Live pause processes of a pod dir, found by pause.pid and by their tag.

    A create killed before it wrote pause.pid still left a pause whose
    environment names pdir.
    """
    pids = set(tags.get(pdir, []))
    try:
        pid, start = (int(x) for x in lean.read_text(os.path.join(pdir, "pause.pid")).split())
        if ProcId(pid, start).alive():
            pids.add(pid)
    except (OSError, ValueError):
        pass
    return sorted(pids)


def _release_all(store: Store, pdir: str) -> None:
    """Frees every kernel object a pod may hold. Idempotent; used by rm and gc."""
    pins.forget(store, os.path.basename(pdir))
    prefix = pdir + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if target.startswith(prefix):
                mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        with contextlib.suppress(OSError):
            sc.umount2(target, sc.MNT_DETACH)


def _remove_tree(top: str, quiet: bool = False) -> None:
    """rm -r top, not following symlinks (shutil costs ~15 ms to import here)."""
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return
    except OSError as e:
        if quiet:
            return
        raise NspodError(f"remove {top}: {os_reason(e)}") from e
    try:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path, quiet)
            else:
                os.unlink(entry.path)
        os.rmdir(top)
    except OSError as e:
        if not quiet:
            raise NspodError(f"remove {e.filename or top}: {os_reason(e)}") from e


def describe_age(rec: PodRecord) -> str:
    secs = int(time.time() - rec.created)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{secs // n}{unit}"
    return f"{secs}s"


def to_json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2)


__all__ = ["ProcId", "PodRecord"]
