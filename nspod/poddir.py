"""A pod's directory and what hangs off it: namespace pins, pause.pid, the
mounts under it, its cgroups, and its removal.

    ROOT/ns/NAME/KIND          bind mounts of pause's namespaces (the pins: pins.py)
    ROOT/pods/NAME/pause.pid   "PID START" while pause runs

Below pod (lifecycle) and gc, which both take pods apart.
"""

from __future__ import annotations

import contextlib
import os

from nspod import cgroups, lean, pins
from nspod import syscalls as sc
from nspod.errors import NspodError, os_reason
from nspod.store import PodRecord, Store

checkpoint = lean.checkpoint  # the lifecycle's and the images' kill points; it lives in lean


def read_pause_pid(pdir: str) -> tuple[int, int] | None:
    """(pid, start) from pause.pid, or None: stopped, exited, or half made."""
    try:
        pid, start = (int(x) for x in lean.read_text(os.path.join(pdir, "pause.pid")).split())
    except (OSError, ValueError):
        return None
    return pid, start


def forget_pause(pdir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(pdir, "pause.pid"))


def unmount_all(store: Store, pdir: str) -> None:
    """Detaches the pins and every other mount under pdir. Idempotent; rm and gc."""
    pins.forget(store, os.path.basename(pdir))
    prefix = pdir + "/"
    mounts = [target for target, _, _ in lean.mounts() if target.startswith(prefix)]
    for target in sorted(mounts, key=len, reverse=True):
        with contextlib.suppress(OSError):
            sc.umount2(target, sc.MNT_DETACH)


def cgroup_dirs(store: Store, rec: PodRecord | None, name: str) -> list[str]:
    """The pod's cgroup directories: as recorded, else where create makes them."""
    recorded = rec.spec.get("cgroups") if rec is not None else None
    if isinstance(recorded, list):
        return [str(d) for d in recorded]
    return cgroups.pod_dirs(cgroups.detect(), store.root, name)


def remove_pod_dir(pdir: str) -> None:
    """The pod's directory, its record first: a removal killed half way leaves a
    directory without a record (a half-made pod, which gc takes), never a
    record whose directory lacks what start needs."""
    try:
        os.unlink(os.path.join(pdir, "pod.json"))
    except FileNotFoundError:
        pass
    except IsADirectoryError:  # a damaged record: remove_tree takes it
        pass
    except OSError as e:
        raise NspodError(f"remove {pdir}/pod.json: {os_reason(e)}") from e
    remove_tree(pdir)


def remove_tree(top: str, quiet: bool = False) -> None:
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
                remove_tree(entry.path, quiet)
            else:
                os.unlink(entry.path)
        os.rmdir(top)
    except OSError as e:
        if not quiet:
            raise NspodError(f"remove {e.filename or top}: {os_reason(e)}") from e
