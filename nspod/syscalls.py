"""Thin wrappers over nspod._core: -1 becomes OSError naming the object.

The only module that imports the cffi extension.
"""

import os

from nspod import _core  # type: ignore[attr-defined]

_ffi = _core.ffi
_lib = _core.lib

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# The namespaces of a pod, in the order a member joins them: mnt last, as
# setns(2) into a mount namespace resets root and cwd.
NS_FLAGS = {
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "net": CLONE_NEWNET,
    "pid": CLONE_NEWPID,
    "mnt": CLONE_NEWNS,
}
NS_KINDS = tuple(NS_FLAGS)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MNT_DETACH = 0x2


def _check(rc: int, what: str) -> None:
    if rc < 0:
        err = _ffi.errno
        raise OSError(err, os.strerror(err), what)


def _cstr(s: str | None) -> object:
    return _ffi.NULL if s is None else s.encode()


def unshare(flags: int) -> None:
    _check(_lib.nspod_unshare(flags), "unshare")


def setns(fd: int, nstype: int, what: str = "namespace") -> None:
    _check(_lib.nspod_setns(fd, nstype), what)


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    _check(
        _lib.nspod_mount(_cstr(source), target.encode(), _cstr(fstype), flags, _cstr(data)),
        target,
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(_lib.nspod_umount2(target.encode(), flags), target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_lib.nspod_pivot_root(new_root.encode(), put_old.encode()), new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_lib.nspod_sethostname(raw, len(raw)), f"hostname {name}")


def link_up(name: str) -> None:
    _check(_lib.nspod_link_up(name.encode()), f"link {name}")
