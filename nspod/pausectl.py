"""Starting a pod's pause, PID 1 of its new namespaces, and killing a lost one.

Pause:   nspod ─fork→ C (unshare pid,uts,ipc,mnt,net) ─fork→ pause (PID 1)
         C exits at once; pause outlives nspod.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import errno
import os

from nspod import lean
from nspod import syscalls as sc
from nspod.errors import NspodError
from nspod.spawn import HERE, why

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

PAUSE_BIN = os.path.join(HERE, "pause")
PAUSE_NS_FLAGS = sum(sc.NS_FLAGS.values())


def _report(fd: int, tag: bytes, text: str) -> None:
    try:
        os.write(fd, tag + text.encode()[:400] + b"\n")
    except OSError:
        pass


DEFAULT_SHM = 64 << 20  # bytes of a pod's /dev/shm, as docker and podman


class PauseSpec:
    __slots__ = ("hostname", "records", "log", "new_net", "chroot", "prepare", "tag", "shm_size",
                 "hide")

    def __init__(
        self,
        hostname: str,
        records: str,  # directory pause writes member exit records into
        log: str,  # pause's stderr
        new_net: bool = True,
        chroot: str | None = None,  # where pause's own root, an empty tmpfs, is made
        prepare: Callable[[], None] | None = None,  # runs as PID 1 before exec (cgroup, ...)
        tag: str = "",  # NSPOD_POD in pause's environment: gc finds a lost pause by it
        shm_size: int = DEFAULT_SHM,  # bytes of the pod's /dev/shm
        hide: str | None = None,  # a mount the pod's namespace leaves out (the pins: pins.py)
    ) -> None:
        self.hostname = hostname
        self.records = str(records)
        self.log = str(log)
        self.new_net = new_net
        self.chroot = None if chroot is None else str(chroot)
        self.prepare = prepare
        self.tag = tag
        self.shm_size = shm_size
        self.hide = hide


def _pins(hide: str | None) -> list[str]:
    """hide, then every namespace file mounted outside it (fstype nsfs)."""
    under = "/" if hide is None else hide.rstrip("/") + "/"
    others = [target for target, fstype, _ in lean.mounts()
              if fstype == "nsfs" and (hide is None or not target.startswith(under))]
    return others if hide is None else [hide, *others]


def start_pause(spec: PauseSpec) -> int:
    """Starts pause as PID 1 of new namespaces; returns its host pid once it runs pause.

    Raises NspodError naming the step that failed; nothing is left running then.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    flags = PAUSE_NS_FLAGS if spec.new_net else PAUSE_NS_FLAGS & ~sc.CLONE_NEWNET
    binfd = os.open(PAUSE_BIN, os.O_RDONLY | os.O_CLOEXEC)
    logfd = os.open(spec.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    c = os.fork()
    if c == 0:
        step = "start"
        try:
            os.close(r)
            step = "unshare namespaces"
            sc.unshare(flags)
            # Private propagation: nothing mounted in the pod reaches the host,
            # and binding this mount namespace's file on the host makes no loop.
            step = "make the pod's mounts private"
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            # the copy of every namespace pin on the host (mount_namespaces(7)):
            # this root's pods' (one call drops the subtree), and any other's
            # (another state root's pods, `ip netns`), so a pod's mount
            # namespace neither grows with the pods nor shows them
            step = "leave out the namespace pins"
            for target in _pins(spec.hide):
                try:
                    sc.umount2(target, sc.MNT_DETACH)
                except OSError as e:
                    if e.errno not in (errno.EINVAL, errno.ENOENT):
                        raise
            p1 = os.fork()
            if p1 == 0:
                _pause_child(spec, w, binfd, logfd)
            os.write(w, b"P%d\n" % p1)
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - reported through the pipe
            _report(w, b"E", f"{step}: {why(e)}")
            os._exit(1)
    for fd in (w, binfd, logfd):
        os.close(fd)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    os.waitpid(c, 0)
    pid = 0
    errors = []
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("P"):
            pid = int(line[1:])
        elif line.startswith("E"):
            errors.append(line[1:])
    if errors or not pid:
        if pid:
            kill_and_forget(pid)
        raise NspodError(f"start pause: {errors[0] if errors else 'it died at once'}")
    return pid


def _detached(path: str, source: str | None, fstype: str | None, flags: int,
              data: str | None = None) -> int:
    """Mounts at path, opens the mount's root, detaches the mount; returns the fd.

    The mount lives on, attached nowhere: `..` from its root leads nowhere, so
    a process that reaches it through /proc/PID/{root,cwd,fd} of pause (a
    member with CAP_SYS_PTRACE, say) sees only what is inside, never the
    host's tree around it.
    """
    sc.mount(source, path, fstype, flags, data)
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        sc.umount2(path, sc.MNT_DETACH)


def _pause_child(spec: PauseSpec, w: int, binfd: int, logfd: int) -> None:
    """PID 1 of the new namespaces: finish the pod's setup, then exec pause."""
    step = "start"
    try:
        step = "mount the pod's /proc"
        sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        step = "mount the pod's /dev/shm"
        # IPC is the pod's: so is its POSIX shared memory (shm_overview(7)).
        sc.mount("shm", "/dev/shm", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                 f"mode=1777,size={spec.shm_size}")
        step = "set the hostname"
        sc.sethostname(spec.hostname)
        if spec.new_net:
            step = "bring up lo"
            sc.link_up("lo")
        if spec.prepare is not None:
            step = "prepare pause"
            spec.prepare()
        os.setsid()
        step = "open the exit records directory"
        recfd = _detached(spec.records, spec.records, None, sc.MS_BIND)
        step = "set up pause's descriptors"
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(logfd, 2)
        os.dup2(recfd, 3)
        # Everything else goes, but pause's binary and the error pipe (both
        # close-on-exec): a failed exec is still reported through it.
        low = 4
        for keep in sorted({binfd, w}):
            os.closerange(low, keep)
            low = max(low, keep + 1)
        os.closerange(low, 65536)
        if spec.chroot is not None:
            # pause's /proc/1/root and cwd: an empty read-only tmpfs, attached nowhere
            step = "enter pause's empty root"
            os.fchdir(_detached(spec.chroot, "pause", "tmpfs",
                                sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                                "mode=0555,size=4k,nr_inodes=1"))
            os.chroot(".")
        os.chdir("/")
        step = "exec pause"
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execve(binfd, ["/pause"], {"NSPOD_POD": spec.tag} if spec.tag else {})
    except BaseException as e:  # noqa: BLE001 - reported through the pipe
        _report(w, b"E", f"{step}: {why(e)}")
    os._exit(1)


def kill_and_forget(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
