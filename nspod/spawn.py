"""The fork/setns/unshare/exec choreography. The only module that forks.

Pause:   nspod ─fork→ C (unshare pid,uts,ipc,mnt,net) ─fork→ pause (PID 1)
         C exits at once; pause outlives nspod.
Member:  nspod (setns into the pod) ─fork→ X (in the pod) ─fork→ P ─exec→ cmd
         X exits at once, so P's parent is pause: pause reaps it and every
         orphan P leaves, and records P's exit status (see csrc/pause.c).
         The kernel gives the orphans of a process to the init of *that
         process's* PID namespace; X lives in the pod's, nspod does not.
"""

import errno
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nspod import syscalls as sc
from nspod.errors import NOT_EXECUTABLE, NOT_FOUND, ExecFailed, NspodError, os_reason

PAUSE_BIN = Path(__file__).resolve().parent / "pause"
PAUSE_NS_FLAGS = sc.CLONE_NEWPID | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNS | sc.CLONE_NEWNET
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
UCRED = struct.Struct("3i")


def _report(fd: int, tag: bytes, text: str) -> None:
    try:
        os.write(fd, tag + text.encode()[:400] + b"\n")
    except OSError:
        pass


@dataclass(frozen=True)
class PauseSpec:
    hostname: str
    records: Path  # directory pause writes member exit records into
    log: Path  # pause's stderr
    new_net: bool = True
    chroot: Path | None = None  # pause's own root: an empty directory


def start_pause(spec: PauseSpec) -> int:
    """Starts pause as PID 1 of new namespaces; returns its host pid once it runs pause.

    Raises NspodError with the step that failed; nothing is left running then.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    flags = PAUSE_NS_FLAGS if spec.new_net else PAUSE_NS_FLAGS & ~sc.CLONE_NEWNET
    binfd = os.open(PAUSE_BIN, os.O_RDONLY | os.O_CLOEXEC)
    recfd = os.open(spec.records, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    logfd = os.open(spec.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    c = os.fork()
    if c == 0:
        try:
            os.close(r)
            step = "unshare namespaces"
            sc.unshare(flags)
            step = "make the pod's mounts private"
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            p1 = os.fork()
            if p1 == 0:
                _pause_child(spec, w, binfd, recfd, logfd)
            os.write(w, b"P%d\n" % p1)
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - reported through the pipe
            _report(w, b"E", f"{step}: {os_reason(e) if isinstance(e, OSError) else e}")
            os._exit(1)
    for fd in (w, binfd, recfd, logfd):
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


def _pause_child(spec: PauseSpec, w: int, binfd: int, recfd: int, logfd: int) -> None:
    """PID 1 of the new namespaces: finish the pod's setup, then exec pause."""
    step = "start"
    try:
        step = "mount the pod's /proc"
        sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        step = "set the hostname"
        sc.sethostname(spec.hostname)
        if spec.new_net:
            step = "bring up lo"
            sc.link_up("lo")
        os.setsid()
        step = "set up pause's descriptors"
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(logfd, 2)
        os.dup2(recfd, 3)
        os.closerange(4, binfd)
        os.closerange(binfd + 1, 65536)
        if spec.chroot is not None:
            step = "enter pause's empty root"
            os.chroot(spec.chroot)
            os.chdir("/")
        else:
            os.chdir("/")
        step = "exec pause"
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execve(binfd, ["/pause"], {})
    except BaseException as e:  # noqa: BLE001 - reported through the pipe
        _report(w, b"E", f"{step}: {os_reason(e) if isinstance(e, OSError) else e}")
    os._exit(1)


def kill_and_forget(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class MemberSpec:
    argv: Sequence[str]
    env: dict[str, str]
    cwd: str | None = None
    ns: dict[str, str] = field(default_factory=dict)  # kind -> pinned namespace path
    # run in P after it has its own mount namespace, before exec (rootfs, limits, ...);
    # what it returns is added to env (e.g. HOME of --user, known only in the member's root)
    prepare: Callable[[], Mapping[str, str] | None] | None = None
    detach: bool = False
    stdio: tuple[int, int, int] | None = None  # fds for 0, 1, 2; None: the caller's


@dataclass
class Member:
    host_pid: int
    pod_pid: int
    pidfd: int


def enter_pod(ns: dict[str, str]) -> None:
    """setns into the pod's namespaces, mnt last (setns(2): it resets root and cwd).

    Only the calling process moves; for pid only its future children do.
    """
    fds = {}
    try:
        for kind in ("ipc", "uts", "net", "pid", "mnt"):
            if kind in ns:
                fds[kind] = os.open(ns[kind], os.O_RDONLY | os.O_CLOEXEC)
        for kind, fd in fds.items():
            sc.setns(fd, sc.NS_FLAGS[kind], f"join the pod's {kind} namespace")
    finally:
        for fd in fds.values():
            os.close(fd)


def start_member(spec: MemberSpec, records_fd: int) -> Member:
    """Starts spec.argv in the pod as a child of pause; returns once it has exec'd.

    The caller must already be in the pod's namespaces (enter_pod).
    Raises ExecFailed (126/127) when the command cannot be run.
    """
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    x = os.fork()
    if x == 0:
        parent.close()
        if os.fork() != 0:
            os._exit(0)
        _member_child(spec, child)
    child.close()
    os.waitpid(x, 0)
    msg, anc, _, _ = parent.recvmsg(512, socket.CMSG_SPACE(UCRED.size))
    if msg.startswith(b"E"):
        raise _exec_error(msg, spec)
    host_pid = 0
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            host_pid = UCRED.unpack(data[: UCRED.size])[0]
    pod_pid = int(msg[1:])
    if not host_pid:
        raise NspodError("start member: no credentials from the member")
    pidfd = os.pidfd_open(host_pid)
    # The exit record must exist before the member can exit: it waits for "go".
    fd = os.open(str(pod_pid), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=records_fd)
    os.close(fd)
    parent.send(b"go")
    msg = parent.recv(512)
    parent.close()
    if msg.startswith(b"E"):
        os.close(pidfd)
        raise _exec_error(msg, spec)
    return Member(host_pid, pod_pid, pidfd)


def _exec_error(msg: bytes, spec: MemberSpec) -> ExecFailed:
    code, _, text = msg[1:].decode(errors="replace").partition(" ")
    return ExecFailed(text, int(code))


def _member_child(spec: MemberSpec, sock: socket.socket) -> None:
    """P: the member before exec. Reports errors as b'E<code> <message>'."""
    what = "start"
    try:
        what = "set up the member's mounts"
        sc.unshare(sc.CLONE_NEWNS)
        env = spec.env
        if spec.prepare is not None:
            env = {**env, **(spec.prepare() or {})}
        if spec.stdio is not None:
            for i, fd in enumerate(spec.stdio):
                os.dup2(fd, i)
        if spec.detach:
            os.setsid()
        else:
            os.setpgid(0, 0)
        sock.send(b"P%d" % os.getpid())
        if sock.recv(16) != b"go":
            os._exit(1)
        if spec.cwd is not None:
            what = f"working directory {spec.cwd}"
            os.chdir(spec.cwd)
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
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
    except NspodError as e:  # from prepare: its message names the object already
        _send_quiet(sock, b"E%d %s" % (e.code, str(e).encode()[:400]))
        os._exit(e.code)
    except BaseException as e:  # noqa: BLE001
        _send_quiet(sock, b"E125 %s: %s" % (what.encode(), str(e).encode()[:300]))
        os._exit(125)
    os._exit(125)


def _send_quiet(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass


def _exec(argv: Sequence[str], env: dict[str, str]) -> None:
    """execvpe with the PATH of env; the last useful error when nothing runs."""
    cmd = argv[0]
    if "/" in cmd:
        os.execve(cmd, list(argv), env)
    last: OSError | None = None
    for d in env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        path = os.path.join(d or ".", cmd)
        try:
            os.execve(path, list(argv), env)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                last = last or e
                continue
            last = e
    raise last or FileNotFoundError(errno.ENOENT, "not found", cmd)


def wait_member(member: Member, records_fd: int, pause_alive: Callable[[], bool]) -> int:
    """Waits for a member to exit; returns its raw wait status from pause's record.

    Forwards FORWARDED signals sent to nspod to the member meanwhile.
    """

    def forward(sig: int, _frame: object) -> None:
        try:
            signal.pidfd_send_signal(member.pidfd, sig)
        except ProcessLookupError:
            pass

    old = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        poller = select.poll()
        poller.register(member.pidfd, select.POLLIN)
        while not poller.poll():
            pass
        # The member is a zombie now; pause reaps it and writes the record.
        deadline = time.monotonic() + 5.0
        delay = 0.0002
        while True:
            status = read_exit(records_fd, member.pod_pid)
            if status is not None:
                return status
            if time.monotonic() > deadline or not pause_alive():
                return signal.SIGKILL  # the pod died under it
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        os.close(member.pidfd)


def read_exit(records_fd: int, pod_pid: int) -> int | None:
    """The wait status pause recorded for pod_pid, or None while it runs."""
    try:
        fd = os.open(str(pod_pid), os.O_RDONLY, dir_fd=records_fd)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 256)
    finally:
        os.close(fd)
    if not data.endswith(b"\n"):
        return None
    return int(data.split()[0])


def exit_code(status: int) -> int:
    """Shell-style exit code of a wait status: N, or 128+signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
