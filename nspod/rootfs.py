"""A member's own root filesystem: pivot_root into it with /proc, /dev, /sys, volumes.

Runs in the member (P in spawn.py) after its unshare(CLONE_NEWNS), so every
mount here lives and dies with the member's private mount namespace, and the
pod's mounts are private: nothing shows in the host's mount table.

Every path inside the rootfs is resolved by resolve_in(): component by
component with O_PATH|O_NOFOLLOW, symlinks followed as if the rootfs were
`/`, `..` stopping at its top. Mounts then target /proc/self/fd/N of the fd
that walk ended on, so a symlink in the rootfs (or one swapped in meanwhile)
can never redirect a mount onto the host. This is what runc's securejoin
and bubblewrap do.

Lean on purpose: join imports it.
"""

from __future__ import annotations

import errno
import os
import stat

from nspod import syscalls as sc
from nspod.errors import NspodError, UsageError, os_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
MAX_SYMLINKS = 40
NOSUID_NODEV_NOEXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


class Volume:
    """-v HOST_PATH:PATH[:ro]"""

    __slots__ = ("source", "target", "read_only")

    def __init__(self, source: str, target: str, read_only: bool = False) -> None:
        self.source = source
        self.target = target
        self.read_only = read_only

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Volume) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"Volume({self.source!r}, {self.target!r}, {self.read_only!r})"

    def to_list(self) -> list[object]:
        return [self.source, self.target, self.read_only]

    @classmethod
    def from_list(cls, v: Sequence[object]) -> Volume:
        return cls(str(v[0]), str(v[1]), bool(v[2]))


def parse_volume(raw: str) -> Volume:
    """HOST_PATH:PATH[:ro|:rw] -> Volume (ValueError names what is wrong)."""
    parts = raw.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1] or mode not in ("ro", "rw"):
        raise ValueError(f"{raw!r} is not HOST_PATH:PATH[:ro]")
    source, target = parts
    if not source.startswith("/") or not target.startswith("/"):
        raise ValueError(f"{raw!r}: both paths must be absolute")
    return Volume(os.path.normpath(source), os.path.normpath(target), mode == "ro")


def check_rootfs(path: str) -> str:
    """The rootfs as an absolute real path; 125 when missing or not a directory."""
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise NspodError(f"rootfs {path}: no such directory")
    if not os.path.isdir(real):
        raise NspodError(f"rootfs {path}: not a directory")
    return real


def check_volumes(volumes: Sequence[Volume]) -> None:
    for v in volumes:
        if not os.path.exists(v.source):
            raise NspodError(f"volume {v.source}: no such file or directory")
        if v.target == "/":
            raise UsageError(f"volume {v.source}:{v.target}: cannot mount over /")


# -- safe paths inside a root ------------------------------------------------------------


def resolve_in(root_fd: int, path: str, create: str | None = None) -> int:
    """An O_PATH fd of path inside the root behind root_fd, never outside it.

    Symlinks are followed as if root_fd were `/`; `..` stops at the top.
    create: None (must exist), "dir" or "file" (made, with missing parent
    directories, when absent). The caller closes the fd.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    cur = os.dup(root_fd)
    stack: list[int] = []
    hops = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if stack:
                    os.close(cur)
                    cur = stack.pop()
                continue
            try:
                fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                if create is None:
                    raise
                if parts or create == "dir":
                    os.mkdir(part, 0o755, dir_fd=cur)
                else:
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=cur))
                fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                os.close(fd)
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(part, dir_fd=cur)
                if target.startswith("/"):
                    for f in stack:
                        os.close(f)
                    stack = []
                    os.close(cur)
                    cur = os.dup(root_fd)
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(cur)
            cur = fd
        return cur
    except BaseException:
        os.close(cur)
        raise
    finally:
        for f in stack:
            os.close(f)


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _mount_at(root_fd: int, path: str, source: str | None, fstype: str | None, flags: int,
              data: str | None = None, create: str = "dir") -> None:
    fd = resolve_in(root_fd, path, create)
    try:
        sc.mount(source, _fd_path(fd), fstype, flags, data)
    finally:
        os.close(fd)


def _remount(root_fd: int, path: str, flags: int) -> None:
    """Sets a bind mount's flags (mount(2): MS_BIND|MS_REMOUNT replaces them all).

    nodev always: a member may mknod (CAP_MKNOD is in the default set), but
    never open a device node it made, on its root or its volumes; the nodes of
    its /dev are bind mounts of their own.
    """
    fd = resolve_in(root_fd, path)
    try:
        sc.mount(None, _fd_path(fd), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_NODEV | flags)
    finally:
        os.close(fd)


# -- the member's root ------------------------------------------------------------------


def _make_dev(root_fd: int) -> None:
    """A minimal /dev on tmpfs: the usual nodes bound from the host's, a private devpts."""
    _mount_at(root_fd, "/dev", "tmpfs", "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV,
              "mode=755,size=65536k")
    dev = resolve_in(root_fd, "/dev")
    try:
        for node in DEV_NODES:
            os.close(os.open(node, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666,
                             dir_fd=dev))
            fd = os.open(node, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
            try:
                sc.mount(f"/dev/{node}", _fd_path(fd), None, sc.MS_BIND)
            finally:
                os.close(fd)
        for name, target in DEV_LINKS:
            if name == "core":
                continue
            os.symlink(target, name, dir_fd=dev)
        for sub in ("pts", "shm", "mqueue"):
            os.mkdir(sub, 0o755, dir_fd=dev)
    finally:
        os.close(dev)
    _mount_at(root_fd, "/dev/pts", "devpts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620")
    # IPC is the pod's: the pod's /dev/shm (a tmpfs made with pause) and the
    # IPC namespace's message queues are the same for every member.
    _mount_at(root_fd, "/dev/shm", "/dev/shm", None, sc.MS_BIND | sc.MS_REC)
    _mount_at(root_fd, "/dev/mqueue", "mqueue", "mqueue", NOSUID_NODEV_NOEXEC)


def enter(rootfs: str, volumes: Sequence[Volume], read_only: bool, etc_dir: str | None) -> None:
    """Makes rootfs this process's / with /proc, /sys, /dev, volumes; the old root gone.

    Runs after unshare(CLONE_NEWNS), in the pod's PID namespace (so a new
    proc mount shows the pod). Raises NspodError naming the step that failed.
    """
    step = f"rootfs {rootfs}"
    try:
        # a mount point of its own, for pivot_root(2)
        sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            step = "rootfs nodev"
            _remount(root_fd, "/", 0)
            step = "mount /proc"
            _mount_at(root_fd, "/proc", "proc", "proc", NOSUID_NODEV_NOEXEC)
            step = "mount /sys"
            _mount_at(root_fd, "/sys", "sysfs", "sysfs", NOSUID_NODEV_NOEXEC | sc.MS_RDONLY)
            step = "make /dev"
            _make_dev(root_fd)
            for v in volumes:
                step = f"volume {v.source}:{v.target}"
                _bind(root_fd, v)
            if etc_dir is not None:
                for name in ("hosts", "hostname", "resolv.conf"):
                    src = os.path.join(etc_dir, name)
                    if os.path.exists(src):
                        step = f"/etc/{name}"
                        _mount_at(root_fd, f"/etc/{name}", src, None, sc.MS_BIND, create="file")
            if read_only:
                step = "read-only rootfs"
                _remount(root_fd, "/", sc.MS_RDONLY)
                taken = {v.target for v in volumes}
                for d in ("/tmp", "/run"):
                    if d not in taken:
                        _mount_at(root_fd, d, "tmpfs", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV,
                                  "mode=1777" if d == "/tmp" else "mode=755")
            step = "pivot_root"
            os.fchdir(root_fd)
        finally:
            os.close(root_fd)
        # pivot_root(".", "."): the old root is stacked on the new one, then
        # detached, so no path of the host is left (pivot_root(2), NOTES).
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise NspodError(f"{step}: {os_reason(e)}") from e


def _bind(root_fd: int, v: Volume) -> None:
    kind = "dir" if os.path.isdir(v.source) else "file"
    fd = resolve_in(root_fd, v.target, create=kind)
    try:
        sc.mount(v.source, _fd_path(fd), None, sc.MS_BIND | sc.MS_REC)
    finally:
        os.close(fd)
    # Read-only (and nodev) only after a remount (mount(2), MS_BIND), of the new
    # mount: resolved again, since fd still names what is under it.
    _remount(root_fd, v.target, sc.MS_RDONLY if v.read_only else 0)


def bind_volumes(volumes: Sequence[Volume]) -> None:
    """Volumes for a member without a rootfs: bound onto the host's paths, in its own
    mount namespace only (the host does not see them)."""
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for v in volumes:
            try:
                _bind(root_fd, v)
            except OSError as e:
                raise NspodError(f"volume {v.source}:{v.target}: {os_reason(e)}") from e
    finally:
        os.close(root_fd)
