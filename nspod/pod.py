"""Pod lifecycle: create, start, stop, rm, kill.

Orchestrates the layers below and owns rollback: each step of a create
registers its undo, so a failure at any step leaves nothing behind. Pod
networking is podnet's, taking pods apart poddir's, reading records back to
the truth gc's, signalling procs'.
"""

from __future__ import annotations

import contextlib
import os
import time

from nspod import cgroups, etcfiles, lean, pausectl, pins, podnet, procs
from nspod.errors import (
    AddressUnavailable,
    DamagedRecord,
    NspodError,
    PodExists,
    PodNotRunning,
    PortUnavailable,
    UsageError,
)
from nspod.gc import gc_light, get, settle, teardown
from nspod.lean import check_name, checkpoint, proc_start, valid_name, write_atomic
from nspod.limits import Limits, pids_limit
from nspod.poddir import (
    forget_pause,
    remove_pod_dir,
    remove_tree,
)
from nspod.security import SecurityOpts
from nspod.store import PodRecord, Store

TYPE_CHECKING = False
if TYPE_CHECKING:  # each costs ms to import at run time; rm and stop must start fast
    from typing import Any


NET_MODES = ("bridge", "none", "host")  # or the name of a network (nspod network create)
CREATE_STEPS = (  # in order; see lean.checkpoint
    "dir", "address", "ports", "cgroup", "pause", "namespaces", "veth", "files", "record",
)


class CreateSpec:
    __slots__ = ("name", "hostname", "net", "ip", "ports", "dns", "add_hosts",
                 "limits", "security", "rootfs", "volumes", "read_only", "seccomp", "shm_size",
                 "image")

    def __init__(
        self,
        name: str | None = None,
        hostname: str | None = None,
        net: str = "bridge",  # bridge (the default network) | none | host | a network's name
        ip: str | None = None,  # --ip: this address rather than the next free one
        ports: tuple[Any, ...] = (),  # portspec.Publish
        dns: tuple[str, ...] = (),
        add_hosts: tuple[tuple[str, str], ...] = (),
        limits: Limits | None = None,
        security: SecurityOpts | None = None,  # defaults of every join
        rootfs: str | None = None,  # default root filesystem of every join
        volumes: tuple[Any, ...] = (),  # rootfs.Volume, for every join
        read_only: bool = False,
        seccomp: str | None = None,  # every join's: "unconfined" or a profile; None: default
        shm_size: int | None = None,  # bytes of the pod's /dev/shm; None: 64 MiB
        image: str | None = None,  # id of every join's default image (image.ensure)
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.net = net
        self.ip = ip
        self.ports = ports
        self.dns = dns
        self.add_hosts = add_hosts
        self.limits = limits or Limits()
        self.security = security or SecurityOpts()
        self.rootfs = rootfs
        self.volumes = volumes
        self.read_only = read_only
        self.seccomp = seccomp
        self.shm_size = shm_size
        self.image = image


def generate_name(store: Store) -> str:
    while True:
        name = "pod-" + os.urandom(4).hex()
        if not os.path.exists(store.pod_dir(name)):
            return name


def check_net(spec: CreateSpec) -> None:
    if spec.net not in NET_MODES and not valid_name(spec.net):
        raise UsageError(f"create: --net {spec.net!r}: use bridge, none, host or a network's name")
    if spec.net in ("none", "host"):
        for opt, given in (("--ip", spec.ip), ("-p", spec.ports)):
            if given:
                raise UsageError(f"create: {opt} needs --net bridge (not --net {spec.net})")


def _net_spec(net: str) -> dict[str, str]:
    """The record's net (bridge | none | host) and, for a bridge, its network."""
    if net in ("none", "host"):
        return {"net": net}
    return {"net": "bridge", "network": "nspod" if net == "bridge" else net}


def create(store: Store, spec: CreateSpec) -> PodRecord:
    name = check_name(spec.name) if spec.name is not None else None
    hostname = spec.hostname if spec.hostname is not None else name
    if hostname is not None:
        check_name(hostname, "hostname")
    check_net(spec)
    from nspod import rootfs

    root = rootfs.check_rootfs(spec.rootfs) if spec.rootfs else None
    rootfs.check_volumes(spec.volumes)
    store.ensure()
    if name is None:
        name = generate_name(store)
        hostname = hostname or name
    assert hostname is not None
    pdir = store.pod_dir(name)
    try:
        os.mkdir(pdir, 0o711)
    except FileExistsError:
        if not os.path.exists(os.path.join(pdir, "pod.json")):
            with store.try_lock(name) as free:
                if free:  # no create at work on it: one was killed half way
                    raise PodExists(f'pod "{name}" was left half made by a killed create: '
                                    "run nspod gc to free it") from None
        raise PodExists(f'pod "{name}" already exists') from None
    # The lock is held until create returns: gc leaves a pod being made alone,
    # and takes what a killed create left once the lock is free.
    with store.lock(name), contextlib.ExitStack() as undo:
        undo.callback(remove_tree, pdir, True)
        checkpoint("dir")
        for sub in ("exits", "root", "members", "logs"):
            os.mkdir(os.path.join(pdir, sub), 0o755)
        os.chmod(os.path.join(pdir, "root"), 0o555)
        rec = PodRecord(
            name=name,
            hostname=hostname,
            created=time.time(),
            state="running",
            spec={**_net_spec(spec.net), "ip": spec.ip, "ports": [p.to_dict() for p in spec.ports],
                  "dns": list(spec.dns), "add_hosts": [list(h) for h in spec.add_hosts],
                  "rootfs": root, "volumes": [v.to_list() for v in spec.volumes],
                  "read_only": spec.read_only, "image": spec.image,
                  **spec.limits.to_spec(), **spec.security.to_spec(),
                  "pids": pids_limit(spec.limits.pids), "seccomp": spec.seccomp,
                  "shm_size": spec.shm_size or pausectl.DEFAULT_SHM},
        )
        if rec.spec["net"] == "bridge":
            rec.net = _claim_net(store, rec, undo)
        _launch(store, rec, undo)
        store.save(rec)
        checkpoint("record")
        from nspod import persist

        persist.save_pod(store, rec, "running")
        undo.callback(persist.forget, store, name)
        undo.pop_all()
    return rec


def _claim_net(store: Store, rec: PodRecord, undo: contextlib.ExitStack,
               prefer: str | None = None) -> dict[str, Any]:
    """The pod's address and host ports (podnet.claim).

    A pod that died without a verb noticing still holds its address and
    ports. Rather than look at every pod before each claim (a cost that grows
    with the pods), a refused claim frees the dead pods' holdings (gc_light)
    and is tried once more.
    """
    try:
        with contextlib.ExitStack() as attempt:
            netrec = podnet.claim(store, rec, attempt, prefer=prefer)
            undo.push(attempt.pop_all())
            return netrec
    except (AddressUnavailable, PortUnavailable):
        gc_light(store)
    return podnet.claim(store, rec, undo, prefer=prefer)


def _launch(store: Store, rec: PodRecord, undo: contextlib.ExitStack) -> None:
    """Starts the pod's pause and everything around it (create and start).

    Fills rec's runtime facts; each step registers its undo on undo.
    """
    from nspod import seccomp

    pdir = store.pod_dir(rec.name)
    net = rec.spec.get("net", "none")
    seccomp.prepare_pod(pdir, rec.spec)  # checks the profile before anything is made
    limits = Limits(rec.spec.get("memory"), rec.spec.get("pids"), rec.spec.get("cpus"))
    cgroup = cgroups.create(store.root, rec.name, limits)  # reuses the empty one on start
    undo.callback(cgroups.remove, cgroup)
    rec.spec["cgroups"] = cgroup
    checkpoint("cgroup")
    # pause joins the cgroup itself, before it execs, as members do (cheaper
    # than moving it by pid: see cgroups.open_procs)
    cgroup_fds = cgroups.open_procs(cgroups.children(cgroup, cgroups.PAUSE))
    try:
        pid = pausectl.start_pause(
            pausectl.PauseSpec(
                hostname=rec.hostname,
                records=os.path.join(pdir, "exits"),
                log=os.path.join(pdir, "pause.log"),
                new_net=net != "host",
                chroot=os.path.join(pdir, "root"),
                tag=pdir,
                hide=store.nsroot,
                prepare=lambda: cgroups.enter(cgroup_fds),
                shm_size=rec.spec.get("shm_size") or pausectl.DEFAULT_SHM,
            )
        )
    finally:
        cgroups.close(cgroup_fds)
    undo.callback(pausectl.kill_and_forget, pid)
    _protect_from_oom(pid)
    start = proc_start(pid)
    if start is None:  # its log goes with the rollback: what it said goes in the error
        try:
            said = lean.read_text(os.path.join(pdir, "pause.log")).strip().splitlines()
        except (OSError, UnicodeDecodeError):
            said = []
        raise NspodError(f"start pause: it exited at once: {said[-1] if said else 'no message'}")
    # pause.pid exists while pause runs: gc_light checks these, not every record
    write_atomic(os.path.join(pdir, "pause.pid"), f"{pid} {start}\n", sync=False)
    undo.callback(forget_pause, pdir)
    checkpoint("pause")
    nsdir = pins.prepare(store, rec.name)
    undo.callback(pins.forget, store, rec.name)
    pins.pin(pid, nsdir, net=net != "host")
    checkpoint("namespaces")
    if net == "bridge":
        rec.net.update(podnet.wire(store, rec.name, rec.net, os.path.join(nsdir, "net"),
                                   undo))
    etcfiles.write_files(os.path.join(pdir, "etc"), etcfiles.EtcSpec(
        name=rec.name, hostname=rec.hostname, net=net, ip=rec.net.get("ip"),
        dns=tuple(rec.spec.get("dns", ())),
        add_hosts=tuple((str(h[0]), str(h[1])) for h in rec.spec.get("add_hosts", ()))))
    if net == "bridge":
        podnet.hosts_join(store, rec, undo)
    checkpoint("files")
    rec.pid, rec.pid_start = pid, start
    rec.state = "running"
    rec.finished = None


def _protect_from_oom(pid: int) -> None:
    """Makes pause the last choice of the OOM killer in its cgroup, as kubelet does.

    Killing PID 1 kills the whole pod (proc(5): oom_score_adj). Best effort:
    lowering it needs CAP_SYS_RESOURCE, which a confined nspod may lack; pause
    is a few pages, the last the OOM killer picks anyway.
    """
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write("-998")


def start_pod(store: Store, name: str) -> PodRecord:
    """A stopped (or exited) pod runs again: new pause, same name and spec.

    `starting` is recorded before anything is made: a start killed at any
    step leaves a record that says the pod may hold anything under its name,
    and the next verb (or gc) frees it all (gc.settle).
    """
    with store.lock(name):
        rec = settle(store, store.load(name))
        if rec.state == "running":
            raise NspodError(f'start pod "{name}": pod is already running')
        if rec.state == "removing":
            raise NspodError(f'start pod "{name}": a removal was interrupted: '
                             f'run nspod rm -f {name}')
        before, before_net = rec.state, dict(rec.net)
        rec.state = "starting"
        store.save(rec)
        checkpoint("starting")
        pdir = store.pod_dir(name)
        pins.forget(store, name)
        try:
            with contextlib.ExitStack() as undo:
                if rec.spec.get("net", "bridge") == "bridge" and not rec.net.get("ip"):
                    rec.net = _claim_net(store, rec, undo, prefer=rec.net.get("released_ip"))
                _launch(store, rec, undo)
                store.save(rec)
                undo.pop_all()
        except NspodError:
            rec.state, rec.net = before, before_net  # rolled back: as it was
            store.save(rec)
            raise
    from nspod import monitor, persist

    persist.save_pod(store, rec, "running")
    monitor.on_start(pdir)  # the members stop ended, and their monitor
    return rec


def stop_pod(store: Store, name: str, timeout: float) -> PodRecord:
    """TERM to every process of the pod, KILL after timeout, pause last."""
    with store.lock(name):
        rec = settle(store, store.load(name))
        pdir = store.pod_dir(name)
        if rec.state == "running" and rec.pause.alive():
            from nspod import monitor

            monitor.on_stop(pdir)  # no restart once stop holds the lock
            procs.stop_all(rec, timeout)
        checkpoint("stopping")
        pins.forget(store, name)
        forget_pause(pdir)
        # The veth goes with the netns, but only once the kernel gets to it: delete
        # it now, so start can make it again under the same name at once.
        if rec.net.get("veth"):
            from nspod import rtnl

            podnet.hosts_leave(store, name, rec.net)
            rtnl.delete_link(rec.net["veth"])
        if rec.state == "running":
            rec.state = "stopped"
            rec.finished = time.time()
        store.save(rec)
        from nspod import persist

        persist.save_pod(store, rec, "stopped")  # a user's stop outlives a reboot
        return rec


def remove_pod(store: Store, name: str, force: bool, timeout: float = 10.0) -> None:
    """rm: `removing` is recorded first, then everything the pod may hold is freed
    by its name, the record last. A killed rm leaves `removing`: rm -f or gc
    finishes it; nothing is ever shown that was freed. A damaged record goes
    with -f, found by the pod's name."""
    try:
        rec: PodRecord | None = get(store, name)
    except DamagedRecord:
        if not force:
            raise
        rec = None
    if rec is not None and rec.state in ("running", "starting"):
        if not force:
            raise NspodError(f'rm pod "{name}": pod is running (stop it first, or use rm -f)')
        if rec.state == "running":
            stop_pod(store, name, timeout)
    with store.lock(name):
        pdir = store.pod_dir(name)
        try:
            rec = store.load(name)
        except DamagedRecord:
            if not force:
                raise
            rec = None
        if rec is not None:
            rec.state = "removing"
            store.save(rec)
        checkpoint("removing")
        from nspod import monitor, persist

        monitor.kill_all(pdir)
        teardown(store, name, rec)
        persist.forget(store, name)
        remove_pod_dir(pdir)


def kill_pod(store: Store, name: str, sig: int) -> int:
    """Sends sig to every process of the pod but pause; returns how many got it."""
    rec = get(store, name)
    if rec.state != "running":
        raise PodNotRunning(f'kill pod "{name}": pod is not running')
    return procs.signal_pod(rec, sig)
