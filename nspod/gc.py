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
from nspod.lean import proc_start
from nspod.poddir import (
    cgroup_dirs,
    forget_pause,
    read_pause_pid,
    remove_tree,
    unmount_all,
)
from nspod.store import PodRecord, ProcId, Store


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
                cgroups.remove(cgroup_dirs(store, rec, rec.name), timeout=0.5)
            # its address and ports go back too; start claims them again
            with contextlib.suppress(NspodError):
                podnet.release(store, [(rec.name, rec.net)])
            rec.net = {"released_ip": rec.net["ip"]} if rec.net.get("ip") else {}
            forget_pause(store.pod_dir(rec.name))
            rec.state = "exited"
            rec.finished = time.time()
            store.save(rec)
    return rec


def get(store: Store, name: str) -> PodRecord:
    """The pod's record, refreshed."""
    return refresh(store, store.load(name))


def list_pods(store: Store) -> list[PodRecord]:
    out = []
    for name in store.names():
        try:
            out.append(get(store, name))
        except NoSuchPod:
            continue  # removed meanwhile
    return out


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


def gc(store: Store) -> list[str]:
    """Gives back everything held by pods that died on their own or were half made.

    Running pods, pods being created (their lock is held) and pods stopped by
    the user are untouched. Returns the names removed.
    """
    removed = []
    tags = pause_tags()  # one scan of /proc for every pod
    with contextlib.ExitStack() as locks:
        # 1. which pods: those whose lock is free and whose pause is gone
        dead: list[tuple[str, str, PodRecord | None]] = []
        for pdir in store.dirs():
            name = os.path.basename(pdir)
            if not locks.enter_context(store.try_lock(name)):
                continue  # a create or another verb is working on it
            try:
                rec: PodRecord | None = store.load(name)
            except NoSuchPod:
                rec = None  # half made: what it holds is found by its name
            except DamagedRecord:
                # nspod writes pod.json whole or not at all: damage came from
                # outside, and the pod may be running or stopped. Left alone;
                # ls and inspect name the file.
                continue
            if rec is not None and (
                    rec.state == "stopped" or (rec.state == "running" and rec.pause.alive())):
                continue
            for pid in pauses_of(pdir, tags):
                pausectl.kill_and_forget(pid)
            from nspod import monitor

            monitor.kill_all(pdir)
            unmount_all(store, pdir)
            dead.append((name, pdir, rec))
        # 2. their network, in batches: the kernel's costs are per call
        with contextlib.suppress(NspodError):
            podnet.release(store, [(name, rec.net if rec is not None else None)
                                   for name, _, rec in dead])
        # 3. their cgroups and state
        for name, pdir, rec in dead:
            with contextlib.suppress(NspodError):
                cgroups.remove(cgroup_dirs(store, rec, name))
            persist.forget_dead(store, name)
            remove_tree(pdir)
            removed.append(name)
    # cgroups and pins of pods whose directory is gone (a create killed before it
    # made one, an rm killed after it removed it)
    live = [os.path.basename(p) for p in store.dirs()]
    cgroups.collect_garbage(store.root, live)
    pins.collect_garbage(store, live)
    from nspod import network

    network.gc(store)  # networks a killed `network create` left, stale /etc/hosts entries
    return removed


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
