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


# -- the new mount API, openat2, close_range (mount_setattr(2), openat2(2)) --------

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
RESOLVE_NO_XDEV = 0x1
RESOLVE_NO_MAGICLINKS = 0x2
RESOLVE_NO_SYMLINKS = 0x4
RESOLVE_BENEATH = 0x8
RESOLVE_IN_ROOT = 0x10
CLOSE_RANGE_CLOEXEC = 0x4
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572


def open_tree(dirfd: int, path: str, flags: int) -> int:
    """A detached copy (OPEN_TREE_CLONE) of the mount at dirfd/path, as an fd."""
    rc = _lib.nspod_open_tree(dirfd, path.encode(), flags | OPEN_TREE_CLOEXEC)
    _check(rc, path or f"fd {dirfd}")
    return int(rc)


def move_mount(tree: int, target: int, what: str = "move mount") -> None:
    """Attaches the detached mount tree onto what the fd target names."""
    _check(_lib.nspod_move_mount(tree, b"", target, b"",
                                 MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), what)


def mount_setattr(fd: int, attr_set: int, attr_clr: int = 0, recursive: bool = True,
                  what: str = "mount_setattr") -> None:
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_lib.nspod_mount_setattr(fd, b"", flags, attr_set, attr_clr), what)


def fsmount(fstype: str, options: dict[str, str], attrs: int) -> int:
    """A new, detached mount of fstype (fsopen/fsconfig/fsmount) as an fd."""
    fs = _lib.nspod_fsopen(fstype.encode(), FSOPEN_CLOEXEC)
    _check(fs, f"fsopen {fstype}")
    try:
        for key, value in options.items():
            _check(_lib.nspod_fsconfig(fs, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0),
                   f"{fstype} option {key}={value}")
        _check(_lib.nspod_fsconfig(fs, FSCONFIG_CMD_CREATE, _ffi.NULL, _ffi.NULL, 0),
               f"create {fstype}")
        rc = _lib.nspod_fsmount(fs, FSMOUNT_CLOEXEC, attrs)
        _check(rc, f"fsmount {fstype}")
        return int(rc)
    finally:
        os.close(fs)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    rc = _lib.nspod_openat2(dirfd, path.encode(), flags | os.O_CLOEXEC, mode, resolve)
    _check(rc, path)
    return int(rc)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_lib.nspod_close_range(first, last, flags), "close_range")


def fs_type(fd: int) -> int:
    rc = _lib.nspod_fs_type(fd)
    _check(rc, f"fd {fd}")
    return int(rc)


def new_session_keyring() -> None:
    _check(_lib.nspod_new_session_keyring(), "session keyring")


def set_dumpable(on: bool) -> None:
    _check(_lib.nspod_set_dumpable(1 if on else 0), "PR_SET_DUMPABLE")


def last_cap() -> int:
    """The highest capability of this kernel, probed (not read from a /proc a root may forge)."""
    return int(_lib.nspod_last_cap())


def seccomp_load(prog: bytes, flags: int = 0) -> None:
    """Installs the seccomp filter prog (struct sock_filter[], from libseccomp) on this thread."""
    _check(_lib.nspod_seccomp_load(prog, len(prog), flags), "seccomp")
