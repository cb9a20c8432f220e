"""Bringing records to the truth: refresh (a pod whose pause died is marked
`exited` and its kernel objects freed), light gc (create's), gc, and the scan
for pauses a killed create lost.
"""

from __future__ import annotations

import contextlib
import os
import time

from nspod import cgroups, pausectl, persist, pins, podnet
from nspod.errors import DamagedRecord, NoSuchPod, NspodError
from nspod.lean import checkpoint, proc_start, valid_name
from nspod.poddir import (
    cgroup_dirs,
    forget_pause,
    read_pause_pid,
    remove_pod_dir,
    unmount_all,
)
from nspod.store import PodRecord, ProcId, Store

SETTLED = ("stopped", "exited")  # the other states: running, and the intents (store.STATES)


def teardown(store: Store, name: str, rec: PodRecord | None,
             tags: dict[str, list[int]] | None = None) -> None:
    """Frees everything pod name may hold: pauses, mounts, network, cgroups.

    rec None (no record, or a damaged one) or in `starting` (a start killed
    before it recorded what it made): the record may not name everything, so
    each part is found by the pod's name (the pause by
    its tag, the address and ports by the records naming the pod, the veth
    and cgroups by the names derived from it). Every part is tried; the
    failures are raised together, and the caller keeps the record.
    """
    pdir = store.pod_dir(name)
    sweep = rec is None or rec.state == "starting"
    for pid in pauses_of(pdir, pause_tags() if sweep and tags is None else tags or {}):
        pausectl.kill_and_forget(pid)
    if rec is not None and rec.pause.alive():
        pausectl.kill_and_forget(rec.pid)
    unmount_all(store, pdir)
    failed = []
    if sweep and rec is not None:
        _delete_veth_of_network(store, name, rec)
    try:
        podnet.release(store, [(name, None if sweep or rec is None else rec.net)])
    except NspodError as e:
        failed.append(str(e))
    try:
        cgroups.remove(cgroup_dirs(store, rec, name))
    except NspodError as e:
        failed.append(str(e))
    if failed:
        raise NspodError(f'pod "{name}": kept, could not free: {"; ".join(failed)}')
    forget_pause(pdir)


def _delete_veth_of_network(store: Store, name: str, rec: PodRecord) -> None:
    """The veth a pod on a named network may have (the by-name release finds the default's)."""
    from nspod import net, network, rtnl

    with contextlib.suppress(NspodError, OSError):
        if rec.net.get("veth"):
            rtnl.delete_link(rec.net["veth"])
        want = rec.spec.get("network")
        if isinstance(want, str) and want != network.DEFAULT:
            rtnl.delete_link(net.veth_name(store.root, name, network.load(store, want).bridge))


def settle(store: Store, rec: PodRecord) -> PodRecord:
    """With the pod's lock held: a record a dead pause or a killed verb left, made true.

    `running` with its pause dead, `starting` (a killed start) and `releasing`
    (a free that failed) become `exited` once everything is freed; until then
    the record stays `releasing`, naming what it holds, and the next verb
    tries again. `removing` is left for rm and gc to finish.
    """
    if rec.state in SETTLED or rec.state == "removing":
        return rec
    if rec.state == "running" and rec.pause.alive():
        return rec
    if rec.state == "running":
        rec.state = "releasing"  # the intent, before the first free
        store.save(rec)
    teardown(store, rec.name, rec)
    ip = rec.net.get("ip") or rec.net.get("released_ip")
    rec.net = {"released_ip": ip} if ip else {}
    rec.state = "exited"
    rec.finished = rec.finished or time.time()
    store.save(rec)
    return rec


def refresh(store: Store, rec: PodRecord) -> PodRecord:
    """The record made true (see settle), unless a verb is at work on the pod.

    The record stays until rm or gc, so the user sees what died. A free that
    fails leaves the pod `releasing`, shown as such; refresh itself never fails.
    """
    if rec.state in SETTLED or rec.state == "removing" or (
            rec.state == "running" and rec.pause.alive()):
        return rec
    with store.try_lock(rec.name) as mine:
        if not mine:
            return rec  # a verb is at work on it: shown as it is
        rec = store.load(rec.name)
        try:
            return settle(store, rec)
        except NspodError:
            return store.load(rec.name)


def get(store: Store, name: str) -> PodRecord:
    """The pod's record, refreshed."""
    return refresh(store, store.load(name))


def list_pods(store: Store) -> tuple[list[PodRecord], list[DamagedRecord]]:
    """Every pod's record, refreshed, and the damaged ones apart: each affects only its pod."""
    out, damaged = [], []
    for name in store.names():
        try:
            out.append(get(store, name))
        except NoSuchPod:
            continue  # removed meanwhile
        except DamagedRecord as e:
            damaged.append(e)
    return out, damaged


def gc_light(store: Store) -> None:
    """Marks dead pods exited and frees what they held: what create and start
    do when an address or port they claim is refused (a dead pod may hold it).

    One small file and one /proc read per running pod; a record is read only
    for a pod whose pause died. (ls and inspect read every record anyway,
    and refresh each.)
    """
    try:
        entries = list(os.scandir(store.pods))
    except FileNotFoundError:
        return
    for entry in entries:
        pause = read_pause_pid(entry.path)
        if pause is None:
            continue  # stopped or exited already, or half made (gc's business)
        pid, start = pause
        if proc_start(pid) == start or not os.path.exists(os.path.join(entry.path, "pod.json")):
            continue
        try:
            refresh(store, store.load(entry.name))
        except (NspodError, OSError):
            continue


def gc(store: Store) -> tuple[list[str], list[str]]:
    """Gives back everything held by pods that died, were half made or half removed.

    Running pods, pods a verb is working on (their lock is held) and pods
    stopped by the user are untouched; a pod whose record is damaged goes,
    with everything it held. Then the sweep: what the kernel and the address
    and port records hold for pods whose directory is gone (the state root
    deleted under running pods, a crash between steps).

    Returns (removed, kept): a pod that still holds something after a failed
    free is kept, marked `releasing`, and freed by the next gc.
    """
    removed: list[str] = []
    kept: list[str] = []
    tags = pause_tags()  # one scan of /proc for every pod
    with contextlib.ExitStack() as locks:
        # 1. which pods: those whose lock is free and whose record is not a live pod's
        dead: list[tuple[str, str, PodRecord | None]] = []
        for pdir in store.dirs():
            name = os.path.basename(pdir)
            if not locks.enter_context(store.try_lock(name)):
                continue  # a create or another verb is working on it
            try:
                rec: PodRecord | None = store.load(name)
            except (NoSuchPod, DamagedRecord):
                rec = None  # half made or damaged: what it holds is found by its name
            except NspodError:
                continue  # a name nspod never makes: not its pod
            if rec is not None and (rec.state == "stopped" or (
                    rec.state == "running" and rec.pause.alive())):
                continue
            if rec is not None and rec.state == "running":
                rec.state = "releasing"  # the intent, before the first free
                store.save(rec)
            from nspod import monitor

            monitor.kill_all(pdir)
            dead.append((name, pdir, rec))
        checkpoint("gc")
        # 2. their network in batches (the kernel's costs are per call), the rest per pod
        failed: dict[str, str] = {}
        batch = [(name, rec) for name, _, rec in dead
                 if rec is not None and rec.state in ("exited", "releasing")]
        try:
            podnet.release(store, [(name, rec.net) for name, rec in batch])
        except podnet.ReleaseFailed as e:
            failed.update((name, "; ".join(whys)) for name, whys in e.pods.items())
        for name, rec in batch:
            if name not in failed:
                rec.net = {}  # freed: teardown need not do it again
        for name, pdir, rec in dead:
            if name in failed:
                kept.append(f"{name} ({failed[name]})")
                continue
            try:
                teardown(store, name, rec, tags)
            except NspodError as e:
                if rec is not None and rec.state in ("exited", "releasing"):
                    rec.state = "releasing"
                    store.save(rec)
                kept.append(f"{name} ({e})")
                continue
            persist.forget_dead(store, name)
            remove_pod_dir(pdir)
            removed.append(name)
    kept += sweep(store, tags)  # cgroups, addresses, ports of pods whose directory is gone
    # and their pins (a create killed before it made its directory, an rm after)
    pins.collect_garbage(store, [os.path.basename(p) for p in store.dirs()])
    from nspod import network

    network.gc(store)  # networks a killed `network create` left, stale /etc/hosts entries
    return removed, kept


def sweep(store: Store, tags: dict[str, list[int]]) -> list[str]:
    """Frees what pods whose directory is gone still hold; returns what it could not.

    Their names come from the kernel and the shared records: pauses tagged
    with a directory of this root, this root's cgroups, address and port
    records. Each is taken under its name (the directory made again and
    locked for the while): a create of that name waits for its turn.
    """
    from nspod import ipam, portmap

    names: set[str] = set()
    prefix = store.pods + "/"
    names.update(t[len(prefix):] for t in tags if t.startswith(prefix))
    layout = cgroups.detect()
    key = cgroups.root_key(store.root) + "-"
    for base in layout.bases() if layout is not None else []:
        with contextlib.suppress(OSError):
            names.update(e[len(key):] for e in os.listdir(base) if e.startswith(key))
    names.update(ipam.holders(store))
    names.update(portmap.holders(store))
    # rules carry their pod's name: one whose pod is gone sends traffic to a
    # free address (an nft a killed nspod started may add it after the rest went)
    names.update(portmap.published_pods(portmap.table_from_env()))
    kept = []
    for name in sorted(names):
        if not valid_name(name):
            continue
        pdir = store.pod_dir(name)
        try:
            store.ensure()
            os.mkdir(pdir, 0o711)
        except FileExistsError:
            continue  # a pod of that name exists: gc's first part judged it
        except OSError:
            continue
        try:
            with store.lock(name):
                teardown(store, name, None, tags)
        except NspodError as e:
            kept.append(f"{name} ({e})")
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(pdir)
    return kept


def pause_tags() -> dict[str, list[int]]:
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


def pauses_of(pdir: str, tags: dict[str, list[int]]) -> list[int]:
    """Live pause processes of a pod dir, found by pause.pid and by their tag.

    A create killed before it wrote pause.pid still left a pause whose
    environment names pdir.
    """
    pids = set(tags.get(pdir, []))
    pause = read_pause_pid(pdir)
    if pause is not None and ProcId(*pause).alive():
        pids.add(pause[0])
    return sorted(pids)
