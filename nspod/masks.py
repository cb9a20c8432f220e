"""/proc and /sys as a container has them: host-revealing files masked, kernel
knobs read-only (runc's maskedPaths and readonlyPaths), every mount made detached
and attached onto an fd resolved beneath the procfs or sysfs mount, no symlink.

Lean on purpose, like the rest of the join path (security.py).
"""

from __future__ import annotations

import os
import stat

from nspod import syscalls as sc
from nspod.errors import NspodError, os_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# runc's default maskedPaths and readonlyPaths (runtime-spec config-linux.md),
# relative to /proc and /sys. sysfs is mounted read-only in a container (runc,
# podman); with the host's files its submounts (cgroups, ...) go read-only too.
PROC_MASKED = ("asound", "acpi", "kcore", "keys", "latency_stats", "timer_list",
               "timer_stats", "sched_debug", "scsi")
SYS_MASKED = ("firmware", "devices/virtual/powercap")
PROC_READ_ONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")


def _beneath(dir_fd: int, rel: str) -> int | None:
    """An O_PATH fd of rel under dir_fd, on the same mount, no symlink; None if absent."""
    try:
        return sc.openat2(dir_fd, rel, os.O_PATH,
                          sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_XDEV)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise NspodError(f"mask {rel}: {os_reason(e)}") from e


def _mask(dir_fd: int, names: Iterable[str]) -> None:
    """Hides each name under dir_fd: a file under /dev/null, a directory under an
    empty read-only tmpfs. Each mount is made detached and attached onto the fd."""
    for rel in names:
        target = _beneath(dir_fd, rel)
        if target is None:
            continue
        try:
            if stat.S_ISDIR(os.fstat(target).st_mode):
                tree = sc.fsmount("tmpfs", {"size": "0", "mode": "555"},
                                  sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID
                                  | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC)
            else:
                tree = sc.open_tree(sc.AT_FDCWD, "/dev/null", sc.OPEN_TREE_CLONE)
            try:
                sc.move_mount(tree, target, rel)
            finally:
                os.close(tree)
        except OSError as e:
            raise NspodError(f"mask {rel}: {os_reason(e)}") from e
        finally:
            os.close(target)


def _read_only(dir_fd: int, names: Iterable[str]) -> None:
    """Binds each name under dir_fd onto itself read-only, submounts included."""
    for rel in names:
        target = _beneath(dir_fd, rel)
        if target is None:
            continue
        try:
            _bind_read_only(target, rel)
        finally:
            os.close(target)


def _bind_read_only(target: int, what: str, then: Callable[[int], None] | None = None) -> None:
    """Binds the mount at target onto itself read-only, submounts included; then(tree)
    runs on the new mount once it is attached."""
    try:
        tree = sc.open_tree(target, "", sc.OPEN_TREE_CLONE | sc.AT_RECURSIVE | sc.AT_EMPTY_PATH)
        try:
            sc.mount_setattr(tree, sc.MOUNT_ATTR_RDONLY, what=what)
            sc.move_mount(tree, target, what)
            if then is not None:
                then(tree)
        finally:
            os.close(tree)
    except OSError as e:
        raise NspodError(f"make {what} read-only: {os_reason(e)}") from e


def mask_proc(proc_fd: int) -> None:
    """Masks MASKED and makes READ_ONLY read-only in the procfs mount at proc_fd."""
    if sc.fs_type(proc_fd) != sc.PROC_SUPER_MAGIC:
        raise NspodError("mask /proc: not procfs")
    _mask(proc_fd, PROC_MASKED)
    _read_only(proc_fd, PROC_READ_ONLY)


def mask_sys(sys_fd: int) -> None:
    """Masks the host-revealing parts of the sysfs mount at sys_fd."""
    _mask(sys_fd, SYS_MASKED)


def mask_host() -> None:
    """/proc masked and /sys read-only (every submount) for a member on the host's files.

    Done through fds as for a rootfs (rootfs.enter): /proc must be procfs
    reached with no symlink.
    """
    try:
        proc = sc.openat2(sc.AT_FDCWD, "/proc", os.O_PATH | os.O_DIRECTORY,
                          sc.RESOLVE_NO_SYMLINKS)
    except OSError as e:
        raise NspodError(f"mask /proc: {os_reason(e)}") from e
    try:
        mask_proc(proc)
    finally:
        os.close(proc)
    try:
        target = sc.openat2(sc.AT_FDCWD, "/sys", os.O_PATH | os.O_DIRECTORY,
                            sc.RESOLVE_NO_SYMLINKS)
    except FileNotFoundError:
        return
    except OSError as e:
        raise NspodError(f"make /sys read-only: {os_reason(e)}") from e
    try:
        _bind_read_only(target, "/sys", then=mask_sys)
    finally:
        os.close(target)
