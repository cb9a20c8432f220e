"""The fork/setns/unshare/exec choreography of members. With pausectl (pause's
own), the only modules that fork.

Member:  nspod ─fork→ C (setns into the pod) ─fork→ X (in the pod's PID ns)
         X ─fork→ [logger] and P ─exec→ CMD; X exits at once.
         The kernel gives a dead process's children to the init of *that
         process's* PID namespace (find_new_reaper, kernel/exit.c): X lives
         in the pod's, so P and the logger become children of pause, which
         reaps them, every orphan they leave, and records P's exit status
         (csrc/pause.c). nspod itself never leaves the host's namespaces.

Kept lean on purpose (no dataclasses, socket, pathlib): `nspod join` imports
it, and every import is paid on each join.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import _socket
import errno
import os
import struct

from nspod import syscalls as sc
from nspod.errors import NOT_EXECUTABLE, NOT_FOUND, ExecFailed, NspodError, os_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
LOGGER_BIN = os.path.join(HERE, "nspod-logger")
FORWARDED = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
)
UCRED = struct.Struct("3i")
TIOCSCTTY = 0x540E
LOGGER_HIGH_FD = 200  # where the logger's binary and log directory wait to be placed


def why(e: BaseException) -> str:
    return os_reason(e) if isinstance(e, OSError) else str(e)


class MemberSpec:
    __slots__ = ("argv", "env", "cwd", "ns", "prepare", "detach", "log_fd", "tty",
                 "logger_prepare", "seccomp", "stdio", "keep_fds", "log_dir_fd",
                 "log_name", "log_max")

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: str | None = None,
        ns: dict[str, str | int] | None = None,  # kind -> pinned path or pidfd
        # in P, in its own mount namespace, before exec (rootfs, cgroup, security);
        # what it returns is added to env (HOME of --user is known only in the root)
        prepare: Callable[[], Mapping[str, str] | None] | None = None,
        detach: bool = False,  # stdin /dev/null, stdout/stderr to the logger
        log_fd: int = -1,  # the log file, for detach
        tty: int = -1,  # a pty slave to be P's terminal and stdio
        logger_prepare: Callable[[], None] | None = None,  # in the logger before exec (cgroup)
        # (seccomp(2) flags, BPF), loaded last, just before exec; None: unconfined
        seccomp: tuple[int, bytes] | None = None,
        # fds to be P's 0, 1, 2 instead of nspod's own (-1: nspod's), e.g. pipes
        # relayed in place of the caller's terminal
        stdio: tuple[int, int, int] | None = None,
        # fds prepare uses (the cgroup files): every other one is closed before it
        keep_fds: Sequence[int] = (),
        log_dir_fd: int = -1,  # the log's directory, for the logger to rotate in
        log_name: str = "",  # the log's name in it
        log_max: int = 0,  # rotate past this many bytes (0: never)
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.ns = ns or {}
        self.prepare = prepare
        self.detach = detach
        self.log_fd = log_fd
        self.tty = tty
        self.logger_prepare = logger_prepare
        self.seccomp = seccomp
        self.stdio = stdio
        self.keep_fds = tuple(keep_fds)
        self.log_dir_fd = log_dir_fd
        self.log_name = log_name
        self.log_max = log_max


class Member:
    __slots__ = ("host_pid", "pod_pid", "pidfd", "logger_pid")

    def __init__(self, host_pid: int, pod_pid: int, pidfd: int, logger_pid: int) -> None:
        self.host_pid = host_pid
        self.pod_pid = pod_pid  # its pid inside the pod
        self.pidfd = pidfd
        self.logger_pid = logger_pid  # the logger's pid inside the pod, or 0


def enter_pod(ns: dict[str, str | int]) -> None:
    """setns into the pod's namespaces. For pid, only future children move.

    ns: kind -> pinned path, or a pidfd of pause (setns(2) takes one since 5.8).
    """
    fds = {}
    try:
        for kind in sc.NS_KINDS:
            if kind in ns:
                where = ns[kind]
                fds[kind] = (os.dup(where) if isinstance(where, int)
                             else os.open(where, os.O_RDONLY | os.O_CLOEXEC))
        for kind, fd in fds.items():
            sc.setns(fd, sc.NS_FLAGS[kind], f"join the pod's {kind} namespace")
    finally:
        for fd in fds.values():
            os.close(fd)


def start_member(spec: MemberSpec, on_started: Callable[[int, int, int], None]) -> Member:
    """Starts spec.argv in the pod as a child of pause; returns once it has exec'd.

    on_started(host_pid, pod_pid, logger_pid) runs before the member may exec
    (so before it can exit): the place to make its exit record.
    Raises ExecFailed (126/127, or 125 for a failed setup step).
    """
    parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    parent.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
    c = os.fork()
    if c == 0:
        parent.close()
        try:
            # Not dumpable until the member's own exec (which resets it): the
            # pod sees X and P, and must not reach this interpreter, its files
            # or its /proc/PID/exe (CVE-2019-5736) through them.
            sc.set_dumpable(False)
            enter_pod(spec.ns)
            x = os.fork()
            if x == 0:
                _member_x(spec, child)
            os.waitpid(x, 0)
        except BaseException as e:  # noqa: BLE001 - reported through the socket
            _send_quiet(child, b"E125 %s" % why(e).encode()[:400])
            os._exit(1)
        os._exit(0)
    child.close()
    try:
        logger_pid = 0
        msg = b""
        while True:
            msg, anc, _, _ = parent.recvmsg(512, _socket.CMSG_SPACE(UCRED.size))
            if msg.startswith(b"L"):
                logger_pid = int(msg[1:])
                continue
            break
        os.waitpid(c, 0)
        if not msg:
            raise NspodError("start member: it died before it started")
        if msg.startswith(b"E"):
            raise _exec_error(msg)
        host_pid = 0
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_CREDENTIALS:
                host_pid = UCRED.unpack(data[: UCRED.size])[0]
        if not host_pid:
            raise NspodError("start member: no credentials from the member")
        pod_pid = int(msg[1:])
        pidfd = os.pidfd_open(host_pid)
        try:
            on_started(host_pid, pod_pid, logger_pid)
            parent.send(b"go")
            msg = parent.recv(512)
        except BaseException:
            os.close(pidfd)
            raise
        if msg.startswith(b"E"):
            os.close(pidfd)
            raise _exec_error(msg)
        return Member(host_pid, pod_pid, pidfd, logger_pid)
    finally:
        parent.close()


def _exec_error(msg: bytes) -> ExecFailed:
    code, _, text = msg[1:].decode(errors="replace").partition(" ")
    return ExecFailed(text, int(code))


def _member_x(spec: MemberSpec, sock: _socket.socket) -> None:
    """X: the first process inside the pod's PID namespace. Forks and exits."""
    try:
        stdio = None
        if spec.detach:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            lg = os.fork()
            if lg == 0:
                _exec_logger(out_r, err_r, spec)
            os.close(out_r)
            os.close(err_r)
            sock.send(b"L%d" % lg)
            stdio = (os.open("/dev/null", os.O_RDONLY), out_w, err_w)
        if os.fork() == 0:
            _member_child(spec, sock, stdio or spec.stdio)
    except BaseException as e:  # noqa: BLE001
        _send_quiet(sock, b"E125 start member: %s" % why(e).encode()[:300])
    os._exit(0)


def _exec_logger(out_r: int, err_r: int, spec: MemberSpec) -> None:
    """The logger: in the pod's cgroup, fds 0, 1, 3 only, exec'd from a read-only mount.

    It drops everything else itself (csrc/logger.c). Its binary is reached
    through a detached read-only copy of its mount: /proc/PID/exe of the
    logger then cannot be reopened for writing (EROFS), even by a member
    with SYS_PTRACE. With a bound on the log (spec.log_max), the log's
    directory is its fd 5, to rotate the log in.
    """
    try:
        if spec.logger_prepare is not None:
            spec.logger_prepare()
        binary = sc.open_tree(sc.AT_FDCWD, LOGGER_BIN, sc.OPEN_TREE_CLONE)
        sc.mount_setattr(binary, sc.MOUNT_ATTR_RDONLY, recursive=False)
        rotate = spec.log_max > 0 and spec.log_dir_fd >= 0
        # out of the way first: either may sit on 4 or 5 now
        os.dup2(binary, LOGGER_HIGH_FD)
        if rotate:
            os.dup2(spec.log_dir_fd, LOGGER_HIGH_FD + 1)
        os.dup2(out_r, 0)
        os.dup2(spec.log_fd, 1)
        os.dup2(err_r, 3)
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 2)
        os.dup2(LOGGER_HIGH_FD, 4)
        os.set_inheritable(4, False)  # fexecve(3) of an ELF binary needs no fd after it
        argv = ["nspod-logger"]
        if rotate:
            os.dup2(LOGGER_HIGH_FD + 1, 5)  # csrc/logger.c rotates in it
            argv += ["-s", str(spec.log_max), spec.log_name]
            sc.close_range(6)
        else:
            sc.close_range(5)
        # An empty root before the exec, too: exec makes the logger dumpable
        # again until its first instructions drop that (csrc/logger.c).
        empty = sc.fsmount("tmpfs", {"size": "4k", "nr_inodes": "1", "mode": "0555"},
                           sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV
                           | sc.MOUNT_ATTR_NOEXEC)
        os.fchdir(empty)
        os.chroot(".")
        os.close(empty)
        os.setsid()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execve(4, argv, {})
    finally:
        os._exit(127)


def _member_child(
    spec: MemberSpec, sock: _socket.socket, stdio: tuple[int, int, int] | None
) -> None:
    """P: the member before exec. Reports errors as b'E<code> <message>'."""
    what = "start"
    try:
        what = "set up the member's mounts"
        sc.unshare(sc.CLONE_NEWNS)
        # A session of its own, as runc and crun give every container process:
        # no controlling terminal but its own pty (-t), so it can never push
        # input into the caller's terminal (TIOCSTI) or signal its group.
        os.setsid()
        if spec.tty >= 0:
            import fcntl  # only here: the tty path

            fcntl.ioctl(spec.tty, TIOCSCTTY, 0)
            stdio = (spec.tty, spec.tty, spec.tty)
        if stdio is not None:
            for i, fd in enumerate(stdio):
                if fd >= 0:
                    os.dup2(fd, i)
        # Nothing of the caller's or nspod's but stdio survives the exec
        # (CVE-2024-21626), and nothing is open while the member's setup
        # resolves paths an image wrote: a /proc/self/fd/N/.. through a
        # directory fd climbed to the host's root. Kept until the exec: the
        # socket and what prepare needs (spec.keep_fds: the cgroup files).
        _close_all_but(sock.fileno(), *spec.keep_fds)
        sc.close_range(3, flags=sc.CLOSE_RANGE_CLOEXEC)
        # and no key of the caller's session (keyrings(7)): a fresh one
        sc.new_session_keyring()
        env = spec.env
        if spec.prepare is not None:
            extra = spec.prepare()
            if extra:
                env = {**env, **extra}
        sock.send(b"P%d" % os.getpid())
        if sock.recv(16) != b"go":
            os._exit(1)
        if spec.cwd is not None:
            what = f"working directory {spec.cwd}"
            os.chdir(spec.cwd)
            _check_cwd()
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # Closed, not only close-on-exec: execve looks up the command (and a
        # symlink to it, its #! or ELF interpreter) before it closes those, and
        # a path an image wrote through /proc/self/fd/N of a directory still
        # open here (the exits directory, a caller's fd) climbed `..` to the
        # host's root: the member ran, and could then overwrite, a host binary
        # (CVE-2024-21626; runc closes them too). Only the socket stays, for
        # exec errors: a socket cannot be walked through.
        _close_all_but(sock.fileno())
        if spec.seccomp is not None:
            # last, after no_new_privs (prepare): nothing of nspod's own is filtered
            what = "load the seccomp filter"
            sc.seccomp_load(spec.seccomp[1], spec.seccomp[0])
        what = spec.argv[0]
        _exec(spec.argv, env)
    except OSError as e:
        code = NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) else NOT_EXECUTABLE
        if what == spec.argv[0]:
            why = "executable file not found" if code == NOT_FOUND else os_reason(e)
            text = f"exec {what}: {why}"
        else:
            code = 125
            text = f"{what}: {os_reason(e)}"
        _send_quiet(sock, b"E%d %s" % (code, text.encode()[:400]))
        os._exit(code)
    except BaseException as e:  # noqa: BLE001
        text = str(e) if isinstance(e, NspodError) else f"{what}: {e}"
        _send_quiet(sock, b"E%d %s" % (getattr(e, "code", 125), text.encode()[:400]))
        os._exit(125)
    os._exit(125)


def _close_all_but(*keep: int) -> None:
    """Closes every fd from 3 up but those in keep."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            if fd > low:
                sc.close_range(low, fd - 1)
            low = fd + 1
    sc.close_range(low)


def _check_cwd() -> None:
    """The working directory must be inside the member's root: one reached through
    an fd (/proc/self/fd/N) may be anywhere; getcwd(3) fails then (ENOENT:
    the kernel reports it "(unreachable)")."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise OSError(errno.ENOENT, "outside the member's root") from None


def _send_quiet(sock: _socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass


def _exec(argv: Sequence[str], env: dict[str, str]) -> None:
    """execvpe with the PATH of env; the most useful error when nothing runs."""
    cmd = argv[0]
    if "/" in cmd:
        os.execve(cmd, list(argv), env)
    last: OSError | None = None
    path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    for d in path.split(":"):
        try:
            os.execve(os.path.join(d or ".", cmd), list(argv), env)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                last = last or e
                continue
            last = e
    raise last or FileNotFoundError(errno.ENOENT, "not found", cmd)


def in_mount_namespace(nsfile: str, action: Callable[[], None], what: str) -> None:
    """Runs action in a child that entered the mount namespace nsfile pins (a pod's), and
    waits for it; NspodError naming what when it fails. The caller's namespaces are
    untouched (setns(2) of a mount namespace needs a single-threaded process: the child)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            fd = os.open(nsfile, os.O_RDONLY | os.O_CLOEXEC)
            sc.setns(fd, sc.CLONE_NEWNS, "the pod's mount namespace")
            action()
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent, then exit
            try:
                os.write(w, why(e).encode()[:400])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(w)
    try:
        message = os.read(r, 512).decode(errors="replace").strip()
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise NspodError(f"{what}: {message or 'failed'}")
