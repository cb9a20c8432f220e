"""Members of a pod: join (foreground, detached, with a terminal).

    ROOT/pods/POD/members/NAME.json   one record per member started by join
    ROOT/pods/POD/exits/PODPID        its exit status, written by pause
    ROOT/pods/POD/logs/NAME.log       a detached member's output (CRI format)

The records and their states: memberstate.py (its names the verbs use are
re-exported here); the setup run in the member
before exec: memberprep.py.

Lean on purpose: `nspod join` imports this, and must start fast.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os
import select
import stat  # os imports it already
import time

from nspod import exits, lean, spawn
from nspod.errors import NspodError, PodNotRunning, UsageError
from nspod.memberprep import prepare_member
from nspod.memberstate import MAX_ENDED as MAX_ENDED
from nspod.memberstate import Pod as Pod
from nspod.memberstate import describe_status as describe_status
from nspod.memberstate import drop_record, finish_stale, forget, oom_kills, prune
from nspod.memberstate import member_records as member_records
from nspod.memberstate import member_state as member_state
from nspod.memberstate import read_member as read_member
from nspod.memberstate import run_status as run_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_MAX_SIZE = 10 << 20  # a detached member's log: this, plus one rotated file of it


def member_env(extra: dict[str, str], hostname: str) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
    term = os.environ.get("TERM")
    if term:
        env["TERM"] = term
    env.update(extra)
    return env


class JoinSpec:
    __slots__ = ("pod", "argv", "env", "cwd", "detach", "name", "tty", "interactive",
                 "security", "user", "rootfs", "volumes", "read_only", "mix_roots",
                 "seccomp", "image", "pull", "restart", "health", "carry", "log_max_size")

    def __init__(
        self,
        pod: str,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None = None,
        detach: bool = False,
        name: str | None = None,
        tty: bool = False,
        interactive: bool = False,
        security: Any = None,  # security.SecurityOpts, on top of the pod's defaults
        user: str | None = None,  # UID[:GID] or NAME[:GROUP], looked up in the member's root
        rootfs: str | None = None,  # overrides the pod's
        volumes: Sequence[Any] = (),  # rootfs.Volume, added to the pod's
        read_only: bool = False,
        mix_roots: bool = False,  # rootfs members and members on the host's files together
        seccomp: str | None = None,  # "unconfined" or a profile's path; None: the pod's
        image: str | None = None,  # run in an overlay of this image (overrides the pod's)
        pull: str = "missing",  # when to pull image: always | missing | never
        restart: str = "no",  # policy.parse_restart (runspec.py: what a run needs again)
        health: dict[str, Any] | None = None,  # policy.health_spec
        carry: dict[str, Any] | None = None,  # a restart: fields kept from the run before
        log_max_size: int = LOG_MAX_SIZE,  # 0: unbounded
    ) -> None:
        self.pod = pod
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.detach = detach
        self.name = name
        self.tty = tty
        self.interactive = interactive
        self.security = security
        self.user = user
        self.rootfs = rootfs
        self.volumes = volumes
        self.read_only = read_only
        self.mix_roots = mix_roots
        self.seccomp = seccomp
        self.restart = restart
        self.health = health
        self.carry = carry
        self.log_max_size = log_max_size
        self.image = image
        self.pull = pull


def _image_of(pod: Pod, spec: JoinSpec) -> Any:
    """The image.Image the member runs in (its own --image, else the pod's), or None.

    Registers the pod as a user of it, so image rm refuses while the pod exists.
    """
    image_id: str | None = None
    if spec.image is None:
        image_id = None if spec.rootfs else pod.rec.get("spec", {}).get("image")
        if not image_id:
            return None
    from nspod import image

    store = image.ImageStore()
    if spec.image is not None:
        image_id = store.resolve(spec.image) if spec.pull == "missing" else None
        if image_id is None:  # not stored, or the policy says pull (or never)
            image_id = image.ensure(store, spec.image, image.check_policy(spec.pull)).id
    assert image_id is not None
    return store.use(image_id, pod.dir)


def _with_image(spec: JoinSpec, config: dict[str, Any]) -> JoinSpec:
    """spec with the image's config where the caller gave nothing: -e, -w, -u, CMD win."""
    from nspod import image

    out = JoinSpec(spec.pod, image.command(config, spec.argv or None),
                   {**image.env_of(config), **spec.env})
    for attr in JoinSpec.__slots__:
        if attr not in ("argv", "env"):
            setattr(out, attr, getattr(spec, attr))
    out.cwd = spec.cwd or config.get("WorkingDir") or None
    out.user = spec.user or config.get("User") or None
    return out


def _generate_name(pod: Pod, argv0: str) -> str:
    base = "".join(ch if lean.valid_name("a" + ch) else "-" for ch in os.path.basename(argv0))
    base = base.strip("-._")[:40] or "member"
    return f"{base}-{os.urandom(3).hex()}"


def _claim_name(pod: Pod, name: str) -> None:
    """Makes NAME's record file, refusing a name a running member holds."""
    path = pod.path("members", f"{name}.json")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644))
        return
    except FileExistsError:
        pass
    old = read_member(path)
    if old and member_state(pod, old)[0] == "running":
        raise NspodError(f'join pod "{pod.name}": member "{name}" already exists and is running')


def join(root: str, spec: JoinSpec) -> tuple[str, int]:
    """Runs spec.argv in the pod. Returns (member name, exit code); detached: code 0 at start."""
    pod = Pod(root, spec.pod)
    if spec.name is not None:
        lean.check_name(spec.name, "member name")
    if not pod.running():
        raise PodNotRunning(f'join pod "{pod.name}": pod is not running')
    try:
        pause_fd = os.pidfd_open(pod.rec["pid"])
    except ProcessLookupError:
        raise PodNotRunning(f'join pod "{pod.name}": pod is not running') from None
    try:
        # the pidfd is pause's only if pause still runs now it is open (the
        # pid may have been reused since): joins enter namespaces through it
        if not pod.pause_alive():
            raise PodNotRunning(f'join pod "{pod.name}": pod is not running')
        return _join(pod, spec, pause_fd)
    finally:
        os.close(pause_fd)


def _join(pod: Pod, spec: JoinSpec, pause_fd: int) -> tuple[str, int]:
    img = _image_of(pod, spec)
    if img is not None:
        spec = _with_image(spec, img.config)
        if not spec.argv:
            raise NspodError(f"join: image {img.id[:12]} has no Entrypoint or Cmd: give a "
                             "command (nspod join POD -- CMD)")
    if not spec.argv:
        raise UsageError("join: no command given (nspod join POD -- CMD [ARG...])")
    os.makedirs(pod.path("members"), exist_ok=True)
    prune(pod)
    name = spec.name or _generate_name(pod, spec.argv[0])
    _claim_name(pod, name)
    lean.checkpoint("claimed")
    overlay = None
    if img is not None:
        from nspod.overlay import Overlay

        try:
            overlay = Overlay.make(img.root, pod.path("members", f"{name}.overlay"))
        except (NspodError, OSError):
            drop_record(pod, name)
            raise
    records = os.open(pod.path("exits"),
                      os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    log_fd = log_dir = -1
    master = slave = -1
    piped = None
    try:
        if spec.detach:
            os.makedirs(pod.path("logs"), exist_ok=True)
            # kept open: the logger rotates the log in it (csrc/logger.c)
            log_dir = os.open(pod.path("logs"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                              | os.O_CLOEXEC)
            log_fd = _open_log(f"{name}.log", log_dir, append=spec.carry is not None)
        if spec.tty:
            master, slave = os.openpty()
        elif not spec.detach and (os.isatty(0) or os.isatty(1) or os.isatty(2)):
            # never the caller's terminal itself: pipes, relayed (terminal.py)
            from nspod.terminal import PipeRelay

            piped = PipeRelay()
        try:
            prepare, cgroup_fds, enter_cgroup, seccomp = prepare_member(pod, spec, overlay)
        except NspodError:
            drop_record(pod, name)  # claimed, never filled: no empty record left
            raise
        mspec = spawn.MemberSpec(
            argv=spec.argv,
            env=member_env(spec.env, pod.rec.get("hostname", pod.name)),
            cwd=spec.cwd,
            ns=pod.ns(pause_fd),
            prepare=prepare,
            detach=spec.detach,
            log_fd=log_fd,
            tty=slave,
            logger_prepare=enter_cgroup,
            seccomp=seccomp,
            stdio=tuple(piped.stdio) if piped is not None else None,  # type: ignore[arg-type]
            keep_fds=cgroup_fds,
            log_dir_fd=log_dir,
            log_name=f"{name}.log",
            log_max=spec.log_max_size,
        )
        terminal = None
        if spec.tty:
            from nspod.terminal import Terminal  # termios and tty: only for -t

            terminal = Terminal(master, spec.interactive)
        started = time.time()

        def on_started(host_pid: int, pod_pid: int, logger_pid: int) -> None:
            finish_stale(pod, records, pod_pid)
            for pid in (pod_pid, logger_pid):
                if pid:
                    os.close(_create(str(pid), 0o644, records))
            rec = {
                "name": name, "argv": spec.argv, "host_pid": host_pid,
                "oom_kills": oom_kills(pod),
                "pid_start": lean.proc_start(host_pid) or 0, "pod_pid": pod_pid,
                "logger_pid": logger_pid, "started": started, "detached": spec.detach,
                "tty": spec.tty, "image": img.id if img is not None else None,
            }
            if spec.detach:
                from nspod.runspec import record_fields

                rec.update(record_fields(spec))
            lean.write_atomic(pod.path("members", f"{name}.json"), lean.dumps(rec), sync=False)
            lean.checkpoint("recorded")

        # A signal for the command may come as soon as it runs, before
        # wait_member forwards them: held until then (children start with an
        # empty mask, spawn.py).
        signal.pthread_sigmask(signal.SIG_BLOCK, spawn.FORWARDED)
        try:
            try:
                member = spawn.start_member(mspec, on_started)
            except NspodError:
                drop_record(pod, name)
                raise
            finally:
                if slave >= 0:
                    os.close(slave)
                if piped is not None:
                    piped.started()
                for fd in cgroup_fds:
                    os.close(fd)
            if spec.detach:
                os.close(member.pidfd)
                if spec.restart != "no" or spec.health:
                    from nspod.runspec import supervise

                    supervise(pod.dir, spec)
                lean.checkpoint("detached")
                return name, 0
            try:
                relay = terminal.relay if terminal else piped.relay if piped else None
                status = exits.wait_member(member, records, lambda: not _readable(pause_fd),
                                           relay)
            finally:
                if terminal is not None:
                    terminal.restore()
            # its status is read: a finished foreground member leaves no file
            # (each would be a page of the pod's tmpfs, charged to its memory)
            forget(pod, records, name, member.pod_pid, 0)
            return name, exits.exit_code(status)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, spawn.FORWARDED)
    finally:
        os.close(records)
        for fd in (log_fd, log_dir):
            if fd >= 0:
                os.close(fd)
        if master >= 0:
            os.close(master)
        if piped is not None:
            piped.close()


def _create(path: str, mode: int, dir_fd: int | None = None) -> int:
    """A new, empty state file at path, for writing: whatever was there (an old
    record, a symlink a member planted) is removed first, never written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    return os.open(path, flags, mode, dir_fd=dir_fd)


def _open_log(name: str, logs: int, append: bool) -> int:
    """A new member's log, new (the rotated one before it removed); a member run
    again (restart, start) appends to its regular file, never through a link."""
    if append:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=logs)
        except (FileNotFoundError, OSError):
            fd = -1
        if fd >= 0:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return fd
            os.close(fd)
        return _create(name, 0o640, logs)
    try:
        os.unlink(f"{name}.1", dir_fd=logs)
    except FileNotFoundError:
        pass
    return _create(name, 0o640, logs)


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])
