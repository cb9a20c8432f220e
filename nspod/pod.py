"""Pod lifecycle: create, join, stop, rm, list, inspect.

Orchestrates the layers below and owns rollback: each step of a create
registers its undo, so a failure at any step leaves nothing behind.
"""

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nspod import etcfiles, spawn
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
from nspod.store import NS_KINDS, PodRecord, ProcId, Store, check_name, proc_start


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotRoot(f"{what}: must be run as root (try sudo)")


NET_MODES = ("bridge", "none", "host")


@dataclass(frozen=True)
class CreateSpec:
    name: str | None = None
    hostname: str | None = None
    net: str = "bridge"  # bridge | none | host
    ip: str | None = None  # --ip: this address rather than the next free one
    ports: tuple[Any, ...] = ()  # portmap.Publish
    dns: tuple[str, ...] = ()
    add_hosts: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint(step: str) -> None:
    """Crash-injection hook for tests: NSPOD_FAIL_AT=STEP fails there, NSPOD_KILL_AT kills."""
    if os.environ.get("NSPOD_FAIL_AT") == step:
        raise NspodError(f"injected failure at {step}")
    if os.environ.get("NSPOD_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


CREATE_STEPS = ("dir", "address", "ports", "pause", "namespaces", "veth", "files", "record")


def generate_name(store: Store) -> str:
    while True:
        name = "pod-" + secrets.token_hex(4)
        if not store.pod_dir(name).exists():
            return name


def create(store: Store, spec: CreateSpec) -> PodRecord:
    name = check_name(spec.name) if spec.name is not None else None
    hostname = spec.hostname if spec.hostname is not None else name
    if hostname is not None:
        check_name(hostname, "hostname")
    check_net(spec)
    require_root("create")
    store.ensure()
    if name is None:
        name = generate_name(store)
        hostname = hostname or name
    assert hostname is not None
    pdir = store.pod_dir(name)
    with contextlib.ExitStack() as undo:
        try:
            pdir.mkdir(mode=0o711)
        except FileExistsError:
            raise PodExists(f'pod "{name}" already exists') from None
        undo.callback(shutil.rmtree, pdir, ignore_errors=True)
        checkpoint("dir")
        netrec: dict[str, Any] = {}
        if spec.net == "bridge":
            netrec = _claim_network(store, name, spec, undo)
        for sub in ("ns", "exits", "root"):
            (pdir / sub).mkdir(mode=0o755)
        (pdir / "root").chmod(0o555)
        pid = spawn.start_pause(
            spawn.PauseSpec(
                hostname=hostname,
                records=pdir / "exits",
                log=pdir / "pause.log",
                new_net=spec.net != "host",
                chroot=pdir / "root",
            )
        )
        undo.callback(_kill_pause, pid)
        start = proc_start(pid)
        if start is None:
            raise NspodError(f'create pod "{name}": pause exited at once (see {pdir}/pause.log)')
        (pdir / "pause.pid").write_text(f"{pid} {start}\n")
        checkpoint("pause")
        undo.callback(release_namespaces, pdir)
        pin_namespaces(pid, pdir / "ns", net=spec.net != "host")
        checkpoint("namespaces")
        if spec.net == "bridge":
            netrec.update(_wire(store, name, netrec, pdir / "ns" / "net", undo))
        etcfiles.write_files(pdir / "etc", etcfiles.EtcSpec(
            name=name, hostname=hostname, net=spec.net, ip=netrec.get("ip"),
            dns=spec.dns, add_hosts=spec.add_hosts))
        checkpoint("files")
        rec = PodRecord(
            name=name,
            hostname=hostname,
            created=time.time(),
            state="running",
            pid=pid,
            pid_start=start,
            spec={"net": spec.net, **spec.extra},
            net=netrec,
        )
        store.save(rec)
        checkpoint("record")
        undo.pop_all()
    return rec


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


def _claim_network(store: Store, name: str, spec: CreateSpec,
                   undo: contextlib.ExitStack) -> dict[str, Any]:
    """Address and host ports of a bridge pod, each with its undo."""
    from nspod import ipam, net, portmap

    subnet = ipam.subnet_from_env()
    bridge = net.bridge_from_env()
    ip = ipam.allocate(store, subnet, name, spec.ip)
    undo.callback(_quietly(ipam.release, store, ip, name))
    checkpoint("address")
    table = portmap.table_from_env()
    ports = list(spec.ports)
    if ports:
        portmap.publish(store, portmap.PortSpec(table=table, bridge=bridge, subnet=str(subnet.net),
                                                pod=name, ip=ip, ports=tuple(ports)))
        undo.callback(_quietly(portmap.unpublish, store, table, name, ports))
        checkpoint("ports")
    return {"ip": ip, "gateway": str(subnet.gateway), "prefixlen": subnet.prefixlen,
            "bridge": bridge, "table": table, "ports": [p.to_dict() for p in ports]}


def _wire(store: Store, name: str, netrec: dict[str, Any], netns: Path,
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


def _kill_pause(pid: int) -> None:
    spawn.kill_and_forget(pid)


def pin_namespaces(pid: int, nsdir: Path, net: bool = True) -> None:
    """Bind-mounts /proc/PID/ns/KIND onto nsdir/KIND, so each outlives pause's lookups."""
    for kind in NS_KINDS:
        if kind == "net" and not net:
            continue
        target = nsdir / kind
        target.touch(mode=0o444)
        try:
            sc.mount(f"/proc/{pid}/ns/{kind}", str(target), None, sc.MS_BIND)
        except OSError as e:
            raise NspodError(f"pin {kind} namespace at {target}: {os_reason(e)}") from e


def release_namespaces(pdir: Path) -> None:
    """Detaches every namespace pin of the pod. Idempotent."""
    nsdir = pdir / "ns"
    for kind in NS_KINDS:
        target = nsdir / kind
        for _ in range(4):  # a pin may be stacked by an interrupted create
            try:
                sc.umount2(str(target), sc.MNT_DETACH)
            except OSError:
                break


def refresh(store: Store, rec: PodRecord) -> PodRecord:
    """Marks a pod whose pause died `exited` and frees its kernel objects.

    The record stays until rm or gc, so the user sees what died.
    """
    if rec.state != "running" or rec.pause.alive():
        return rec
    with store.lock(rec.name):
        rec = store.load(rec.name)
        if rec.state == "running" and not rec.pause.alive():
            release_namespaces(store.pod_dir(rec.name))
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
    pdir = store.pod_dir(rec.name)
    running = rec.state == "running"
    return {
        "name": rec.name,
        "state": rec.state,
        "pid": rec.pid if running else 0,
        "hostname": rec.hostname,
        "created": _iso(rec.created),
        "finished": _iso(rec.finished) if rec.finished else None,
        "namespaces": {
            kind: str(pdir / "ns" / kind)
            for kind in NS_KINDS
            if running and (kind != "net" or rec.spec.get("net") != "host")
        },
        "net": rec.spec.get("net", "none"),
        **rec.net,
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- join ---------------------------------------------------------------------


@dataclass(frozen=True)
class JoinSpec:
    pod: str
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def member_env(extra: dict[str, str], hostname: str) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
    term = os.environ.get("TERM")
    if term:
        env["TERM"] = term
    env.update(extra)
    return env


def join(store: Store, spec: JoinSpec) -> int:
    """Runs spec.argv in the pod in the foreground; returns its exit code."""
    require_root("join")
    rec = store.load(spec.pod)
    pdir = store.pod_dir(rec.name)
    if rec.state != "running" or not rec.pause.alive():
        refresh(store, rec)
        raise PodNotRunning(f'join pod "{rec.name}": pod is not running')
    try:
        pause_fd = os.pidfd_open(rec.pid)
    except ProcessLookupError:
        raise PodNotRunning(f'join pod "{rec.name}": pod is not running') from None
    if proc_start(rec.pid) != rec.pid_start:
        raise PodNotRunning(f'join pod "{rec.name}": pod is not running')
    records = os.open(pdir / "exits", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ns = {k: str(pdir / "ns" / k) for k in NS_KINDS if (pdir / "ns" / k).exists()}
    etc = pdir / "etc"
    try:
        spawn.enter_pod(ns)
    except OSError as e:
        raise PodNotRunning(f'join pod "{rec.name}": {os_reason(e)}') from e
    member = spawn.start_member(
        spawn.MemberSpec(
            argv=spec.argv,
            env=member_env(spec.env, rec.hostname),
            cwd=spec.cwd,
            ns=ns,
            # the pod's /etc/hosts, hostname, resolv.conf over the host's, privately
            prepare=lambda: etcfiles.bind_into(etc, "/"),
        ),
        records,
    )
    status = spawn.wait_member(member, records, lambda: not _readable(pause_fd))
    with contextlib.suppress(OSError):
        os.unlink(str(member.pod_pid), dir_fd=records)
    return spawn.exit_code(status)


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


# -- stop / rm ------------------------------------------------------------------


def pod_processes(rec: PodRecord, pdir: Path) -> list[int]:
    """Host pids of every process in the pod's PID namespace but pause."""
    try:
        ino = os.stat(pdir / "ns" / "pid").st_ino
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
                left = _wait_fds(_signal_all(pod_processes(rec, pdir), signal.SIGTERM),
                                 time.monotonic() + timeout)
                for fd in left:
                    os.close(fd)
                # KILL pause: the kernel kills whatever is left in its PID namespace.
                signal.pidfd_send_signal(pause_fd, signal.SIGKILL)
                _wait_fds([pause_fd], time.monotonic() + 10)
        release_namespaces(pdir)
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
        if not (pdir / "pod.json").exists():
            raise NoSuchPod(f'pod "{name}": no such pod')
        release_namespaces(pdir)
        release_network(store, name, store.load(name).net)
        _remove_tree(pdir)


def _remove_tree(pdir: Path) -> None:
    def onerror(func: Callable[..., Any], path: str, exc: Any) -> None:
        raise NspodError(f"remove {path}: {exc[1]}")

    shutil.rmtree(pdir, onerror=onerror)


def describe_age(rec: PodRecord) -> str:
    secs = int(time.time() - rec.created)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{secs // n}{unit}"
    return f"{secs}s"


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2)


__all__ = ["ProcId", "PodRecord"]
