"""Namespace pins: bind mounts of pause's /proc/PID/ns/KIND that keep a pod's namespaces.

The pins of every pod live under ROOT/ns/NAME/, and ROOT/ns is a bind mount
of itself that nspod makes private and unbindable, as `ip netns` does for
/run/netns. Two reasons, both from systemd hosts, where `/` (so /run, /tmp)
is mounted shared:

- A bind mount onto a shared mount propagates to its peers and slaves (every
  service with PrivateTmp or ProtectSystem has such a copy). The kernel
  refuses to copy a mount namespace file there (copy_tree: EINVAL), so the mnt
  pin fails; the other pins would propagate into namespaces nspod does not own
  and keep a dead pod's network alive there.
- A new mount namespace copies every mount of its parent (mount_namespaces(7)),
  pins included: each pause would hold every earlier pod's pins (quadratic
  growth). pause's setup detaches ROOT/ns in its own namespace (spawn), which
  drops the whole subtree in one call; being private, the detach stays there.

Only ROOT/ns changes propagation: it is nspod's own mount, never the host's.
"""

from __future__ import annotations

import errno
import os

from nspod import lean
from nspod import syscalls as sc
from nspod.errors import NspodError, os_reason
from nspod.store import Store


def pins_dir(store: Store, name: str) -> str:
    """Where a pod's pins live: ROOT/ns/NAME."""
    return os.path.join(store.nsroot, name)


def _ensure_mount(nsroot: str) -> None:
    """Makes nsroot a private, unbindable bind mount of itself, once."""
    try:
        # EINVAL unless nsroot is a mount point already (mount(2)); unbindable
        # is also private, so this alone settles an existing mount
        sc.mount(None, nsroot, None, sc.MS_UNBINDABLE)
        return
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    sc.mount(nsroot, nsroot, None, sc.MS_BIND)
    sc.mount(None, nsroot, None, sc.MS_UNBINDABLE)


def prepare(store: Store, name: str) -> str:
    """Makes ROOT/ns/NAME on nspod's private mount; returns its path."""
    os.makedirs(store.nsroot, mode=0o711, exist_ok=True)
    with store.global_lock("ns"):
        try:
            _ensure_mount(store.nsroot)
        except OSError as e:
            raise NspodError(f"make {store.nsroot} a private mount: {os_reason(e)}") from e
        d = pins_dir(store, name)
        os.makedirs(d, mode=0o711, exist_ok=True)
    return d


# What is pinned: the network namespace (nspod configures it after pause
# started, and tools take it by path, as from `ip netns`) and the mount
# namespace (a new mount namespace never copies a mount namespace's pin:
# copy_tree skips them without CL_COPY_MNT_NS_FILE). ipc, uts and pid are held
# by pause alone and joined through its pidfd (setns(2) takes one): every pin
# a new mount namespace copies costs each later create a copy and a detach,
# ~17 us a pin here, so five pins a pod made the 300th create 25 ms slower.
PINNED = ("net", "mnt")


def pin(pid: int, nsdir: str, net: bool = True) -> None:
    """Bind-mounts /proc/PID/ns/KIND onto nsdir/KIND for each kind in PINNED."""
    for kind in PINNED:
        if kind == "net" and not net:
            continue
        target = os.path.join(nsdir, kind)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
        try:
            sc.mount(f"/proc/{pid}/ns/{kind}", target, None, sc.MS_BIND)
        except OSError as e:
            if kind == "mnt" and e.errno == errno.EINVAL:
                # mnt_ns_loop (fs/namespace.c) refuses a namespace whose id is
                # not above the caller's, and since 6.x ids come in per-CPU
                # batches: when nspod itself runs in a non-initial mount
                # namespace the check fails at random. Joins then enter
                # through pause's pidfd (member.Pod.ns), which pause keeps.
                os.unlink(target)
                continue
            raise NspodError(f"pin {kind} namespace at {target}: {os_reason(e)}") from e


def release(nsdir: str) -> None:
    """Detaches every pin in nsdir. Idempotent; the directory stays."""
    for kind in sc.NS_KINDS:
        target = os.path.join(nsdir, kind)
        for _ in range(4):  # a pin may be stacked by an interrupted create
            try:
                sc.umount2(target, sc.MNT_DETACH)
            except OSError:
                break


def forget(store: Store, name: str) -> None:
    """Removes a pod's pin directory; the last one out unmounts ROOT/ns.

    Under the lock prepare takes, so a create never pins onto a mount being
    taken away. Leaves no mount behind once no pod is left (rm of the last
    pod, or gc), as a user and the suite's leak check expect.
    """
    d = pins_dir(store, name)
    release(d)
    if not os.path.isdir(store.nsroot):
        return
    with store.global_lock("ns"):
        for kind in sc.NS_KINDS:
            try:
                os.unlink(os.path.join(d, kind))
            except FileNotFoundError:
                pass
            except OSError:
                return  # still mounted (busy): gc retries
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            if os.listdir(store.nsroot):
                return
        except FileNotFoundError:
            return
        try:
            sc.umount2(store.nsroot, sc.MNT_DETACH)
        except OSError:
            pass  # not mounted


def collect_garbage(store: Store, live: list[str]) -> None:
    """gc: forgets pin directories of pods that are gone; unmounts ROOT/ns if unused."""
    try:
        names = os.listdir(store.nsroot)
    except FileNotFoundError:
        return
    for name in names:
        if name not in live:
            forget(store, name)
    if not names:
        with store.global_lock("ns"):
            if not os.listdir(store.nsroot):
                try:
                    sc.umount2(store.nsroot, sc.MNT_DETACH)
                except OSError:
                    pass  # not mounted


def ns_file(pdir: str, kind: str) -> str:
    """A path to the namespace `kind` of the pod whose directory is pdir: its pin,
    else pause's own /proc/PID/ns/KIND (kinds never pinned, a refused mnt pin),
    pause named by pause.pid and checked by its start time. Missing: the pod's
    pin path, whose absence the caller reports."""
    root, name = os.path.dirname(os.path.dirname(pdir)), os.path.basename(pdir)
    pin_path = os.path.join(root, "ns", name, kind)
    if os.path.exists(pin_path):
        return pin_path
    try:
        pid, start = (int(x) for x in lean.read_text(os.path.join(pdir, "pause.pid")).split())
    except (OSError, ValueError):
        return pin_path
    if lean.proc_start(pid) != start:
        return pin_path
    return f"/proc/{pid}/ns/{kind}"
