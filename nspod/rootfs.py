"""A member's own root filesystem: pivot_root into it with /proc, /dev, /sys, volumes.

Runs in the member (P in spawn.py) after its unshare(CLONE_NEWNS), so every
mount here lives and dies with the member's private mount namespace, and the
pod's mounts are private: nothing shows in the host's mount table.

Every path inside the rootfs is resolved once, by resolve_in()
(openat2(2) with RESOLVE_IN_ROOT: symlinks followed as if the rootfs were
`/`, `..` stopping at its top), and every mount is made detached
(open_tree(2), fsmount(2)), given its attributes (mount_setattr(2),
recursive), then attached onto that fd (move_mount(2)): a symlink in the
rootfs, or one a member swaps in meanwhile, can never redirect a mount onto
the host or make a read-only mount land elsewhere (CVE-2021-30465). /proc,
/sys and /dev must be the root's own directories, never symlinks
(CVE-2019-16884).

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
MOUNT_NOSUID_NODEV_NOEXEC = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC


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

    Symlinks are followed as if root_fd were `/`; `..` stops at the top: the
    kernel does it (openat2(2), RESOLVE_IN_ROOT), and the walk below only makes
    what is missing. create: None (must exist), "dir" or "file" (made, with
    missing parent directories, when absent). The caller closes the fd.
    """
    try:
        return sc.openat2(root_fd, path.lstrip("/") or ".", os.O_PATH,
                          sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        if create is None:
            raise
    return _walk_in(root_fd, path, create)


def _walk_in(root_fd: int, path: str, create: str) -> int:
    """resolve_in by hand, component by component, making what is missing."""
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


def top_dir(root_fd: int, name: str) -> int:
    """An O_PATH fd of the directory /name of the root (proc, sys, dev), made when missing.

    A symlink or anything but a directory there is refused, as runc does for
    /proc (CVE-2019-16884): the kernel's files are mounted on the root's own
    directory or not at all, never where a link an image or a member wrote
    points.
    """
    how = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_SYMLINKS
    try:
        return sc.openat2(root_fd, name, os.O_PATH | os.O_DIRECTORY, how)
    except FileNotFoundError:
        try:
            os.mkdir(name, 0o755, dir_fd=root_fd)
        except FileExistsError:
            pass  # a dangling symlink: refused below
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    try:
        return sc.openat2(root_fd, name, os.O_PATH | os.O_DIRECTORY, how)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
            raise NspodError(f"/{name} of the rootfs is not a directory (a symlink or a file): "
                             "refused") from None
        raise


def attach(tree: int, target: int, what: str, keep_tree: bool = False) -> None:
    """Attaches a detached mount onto target; closes target, and tree unless keep_tree."""
    try:
        sc.move_mount(tree, target, what)
    finally:
        if not keep_tree:
            os.close(tree)
        os.close(target)


def clone_tree(path: str, attrs: int, dir_fd: int = sc.AT_FDCWD) -> int:
    """A detached, recursive copy of the mounts at path with attrs set on every one of them.

    Attributes go on before the copy is attached anywhere, so nothing a member
    does between two steps can send them elsewhere (CVE-2021-30465), and they
    are recursive, submounts included (mount_setattr(2), AT_RECURSIVE).
    """
    flags = sc.OPEN_TREE_CLONE | sc.AT_RECURSIVE | (sc.AT_EMPTY_PATH if not path else 0)
    tree = sc.open_tree(dir_fd, path, flags)
    if attrs:
        try:
            sc.mount_setattr(tree, attrs, what=path or "mount")
        except BaseException:
            os.close(tree)
            raise
    return tree


# -- the member's root ------------------------------------------------------------------


def _make_dev(root_fd: int) -> None:
    """A minimal /dev on tmpfs: the usual nodes bound from the host's, a private devpts."""
    dev = sc.fsmount("tmpfs", {"mode": "755", "size": "65536k"}, MOUNT_NOSUID_NODEV_NOEXEC)
    try:
        attach(dev, top_dir(root_fd, "dev"), "/dev", keep_tree=True)
        for node in DEV_NODES:
            os.close(os.open(node, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666,
                             dir_fd=dev))
            attach(clone_tree(f"/dev/{node}", 0),
                   os.open(node, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev),
                   f"/dev/{node}")
        for name, target in DEV_LINKS:
            if name == "core":
                continue
            os.symlink(target, name, dir_fd=dev)
        for sub in ("pts", "shm", "mqueue"):
            os.mkdir(sub, 0o755, dir_fd=dev)

        def sub_fd(name: str) -> int:
            return os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                           dir_fd=dev)

        attach(sc.fsmount("devpts", {"ptmxmode": "0666", "mode": "0620"},
                          sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NOEXEC), sub_fd("pts"), "/dev/pts")
        # IPC is the pod's: the pod's /dev/shm (a tmpfs made with pause) and the
        # IPC namespace's message queues are the same for every member.
        attach(clone_tree("/dev/shm", 0), sub_fd("shm"), "/dev/shm")
        attach(sc.fsmount("mqueue", {}, MOUNT_NOSUID_NODEV_NOEXEC), sub_fd("mqueue"),
               "/dev/mqueue")
    finally:
        os.close(dev)


def enter(rootfs: str, volumes: Sequence[Volume], read_only: bool, etc_dir: str | None,
          mask: bool = True) -> None:
    """Makes rootfs this process's / with /proc, /sys, /dev, volumes; the old root gone.

    Runs after unshare(CLONE_NEWNS), in the pod's PID namespace (so a new
    proc mount shows the pod). Every mount is made detached, given its
    attributes, then attached onto an fd resolved once inside the root: no
    path in the rootfs, which members can write, is looked up twice.
    mask: /proc and /sys masked and read-only where containers have them so.
    Raises NspodError naming the step that failed.
    """
    from nspod import masks

    step = f"rootfs {rootfs}"
    try:
        # a mount of its own, for pivot_root(2), nodev throughout: a member may
        # make a device node, never open one
        root_fd = clone_tree(rootfs, sc.MOUNT_ATTR_NODEV)
        try:
            attach(root_fd, os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), rootfs,
                   keep_tree=True)
            for fstype, where, attrs, masker in (
                    ("proc", "proc", MOUNT_NOSUID_NODEV_NOEXEC, masks.mask_proc),
                    ("sysfs", "sys", MOUNT_NOSUID_NODEV_NOEXEC | sc.MOUNT_ATTR_RDONLY,
                     masks.mask_sys)):
                step = f"mount /{where}"
                fs = sc.fsmount(fstype, {}, attrs)
                try:
                    if fstype == "proc" and sc.fs_type(fs) != sc.PROC_SUPER_MAGIC:
                        raise NspodError("mount /proc: not procfs")
                    attach(fs, top_dir(root_fd, where), f"/{where}", keep_tree=True)
                    if mask:
                        step = f"mask /{where}"
                        masker(fs)
                finally:
                    os.close(fs)
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
                        attach(clone_tree(src, sc.MOUNT_ATTR_NODEV),
                               resolve_in(root_fd, f"/etc/{name}", create="file"),
                               f"/etc/{name}")
            if read_only:
                step = "read-only rootfs"
                sc.mount_setattr(root_fd, sc.MOUNT_ATTR_RDONLY, recursive=False)
                taken = {v.target for v in volumes}
                for d in ("/tmp", "/run"):
                    if d not in taken:
                        tmp = sc.fsmount("tmpfs", {"mode": "1777" if d == "/tmp" else "755"},
                                         sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV)
                        attach(tmp, resolve_in(root_fd, d, create="dir"), d)
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
    except NspodError as e:
        raise NspodError(f"{step}: {e}") from e


def _bind(root_fd: int, v: Volume) -> None:
    """Binds a volume: its whole tree, nodev and (with :ro) read-only throughout,
    made so before it is attached (a read-only volume is never writable, not even
    for an instant, and none of its submounts is)."""
    attrs = sc.MOUNT_ATTR_NODEV | (sc.MOUNT_ATTR_RDONLY if v.read_only else 0)
    tree = clone_tree(v.source, attrs)
    try:
        kind = "dir" if stat.S_ISDIR(os.fstat(tree).st_mode) else "file"
        target = resolve_in(root_fd, v.target, create=kind)
    except BaseException:
        os.close(tree)
        raise
    attach(tree, target, v.target)


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
