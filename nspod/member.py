"""Members of a pod: join (foreground, detached, with a terminal), ps, logs, kill.

    ROOT/pods/POD/members/NAME.json   one record per member started by join
    ROOT/pods/POD/exits/PODPID        its exit status, written by pause
    ROOT/pods/POD/logs/NAME.log       a detached member's output (CRI format)

Lean on purpose: `nspod join` imports this, and must start fast.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os
import select
import stat  # os imports it already
import time

from nspod import lean, records, spawn
from nspod import syscalls as sc
from nspod.errors import DamagedRecord, NspodError, PodNotRunning, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_MAX_SIZE = 10 << 20  # a detached member's log: this, plus one rotated file of it


class Pod:
    """What the member verbs need of a pod: its paths and its record, read lean."""

    __slots__ = ("name", "dir", "nsdir", "rec")

    def __init__(self, root: str, name: str) -> None:
        self.name = lean.check_name(name)
        self.dir = os.path.join(root, "pods", name)
        self.nsdir = os.path.join(root, "ns", name)  # its namespace pins (pins.py)
        self.rec = records.read_pod(self.dir, name)

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def pause_alive(self) -> bool:
        pid = self.rec.get("pid", 0)
        return bool(pid) and lean.proc_start(pid) == self.rec.get("pid_start")

    def running(self) -> bool:
        return self.rec.get("state") == "running" and self.pause_alive()

    def ns(self, pause_fd: int) -> dict[str, str | int]:
        """The pins to setns through; pause's pidfd for a kind without one (ipc,
        uts and pid are never pinned, a mnt pin the kernel refused: pins.pin;
        net of a --net host pod, which is the host's anyway)."""
        return {k: p if os.path.exists(p := os.path.join(self.nsdir, k)) else pause_fd
                for k in sc.NS_KINDS}


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
    _prune(pod)
    name = spec.name or _generate_name(pod, spec.argv[0])
    _claim_name(pod, name)
    lean.checkpoint("claimed")
    overlay = None
    if img is not None:
        from nspod import image

        try:
            overlay = image.Overlay.make(img.root, pod.path("members", f"{name}.overlay"))
        except (NspodError, OSError):
            _drop_record(pod, name)
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
            prepare, cgroup_fds, enter_cgroup, seccomp = _prepare(pod, spec, overlay)
        except NspodError:
            _drop_record(pod, name)  # claimed, never filled: no empty record left
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
            _finish_stale(pod, records, pod_pid)
            for pid in (pod_pid, logger_pid):
                if pid:
                    os.close(_create(str(pid), 0o644, records))
            rec = {
                "name": name, "argv": spec.argv, "host_pid": host_pid,
                "oom_kills": _oom_kills(pod),
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
                _drop_record(pod, name)
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
                status = spawn.wait_member(member, records, lambda: not _readable(pause_fd),
                                           relay)
            finally:
                if terminal is not None:
                    terminal.restore()
            # its status is read: a finished foreground member leaves no file
            # (each would be a page of the pod's tmpfs, charged to its memory)
            _forget(pod, records, name, member.pod_pid, 0)
            return name, spawn.exit_code(status)
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


def _prepare(pod: Pod, spec: JoinSpec, overlay: Any = None) -> tuple[
        Callable[[], dict[str, str]], list[int], Callable[[], None], tuple[int, bytes] | None]:
    """The member's setup before exec, run in it (in its own mount namespace).

    Order matters: join the pod's cgroup first (through fds opened here, in the
    host's mounts), then the filesystem, then /proc masks, user and
    capabilities last, since they take away the rights the steps before need.
    The seccomp filter (compiled here, or read from the pod's cache) comes
    after all of them: spawn loads it just before exec.
    """
    from nspod import cgroups, etcfiles, mixing, rootfs, seccomp, security

    pod_spec = pod.rec.get("spec", {})
    etc = pod.path("etc")
    if overlay is not None:  # image.Overlay: the image below, the member's writes above
        root = overlay.merged
    else:
        root = rootfs.check_rootfs(spec.rootfs) if spec.rootfs else pod_spec.get("rootfs")
    if root == "/":  # --rootfs /: the host's files, overriding the pod's rootfs
        root = None
    mixing.claim(pod, host=not root, mix=spec.mix_roots)
    volumes = [rootfs.Volume.from_list(v) for v in pod_spec.get("volumes", [])]
    volumes += list(spec.volumes)
    rootfs.check_volumes(volumes)
    read_only = spec.read_only or bool(pod_spec.get("read_only"))
    policy = security.resolve(security.SecurityOpts.from_spec(pod_spec),
                              spec.security or security.SecurityOpts(), spec.user)
    bpf = seccomp.member_filter(pod.dir, pod_spec.get("seccomp"), spec.seccomp,
                                policy.caps, policy.privileged)
    cgroup_fds = cgroups.open_procs(cgroups.children(pod_spec.get("cgroups", []),
                                                     cgroups.MEMBERS))
    explicit = spec.env

    def enter_cgroup() -> None:
        cgroups.enter(cgroup_fds)
        if cgroup_fds:
            # its own cgroup namespace, rooted where it now is: the member
            # sees "/", not the host's tree and the pod's limits above it
            sc.unshare(sc.CLONE_NEWCGROUP)

    def prepare() -> dict[str, str]:
        enter_cgroup()
        if root:
            # what runs after the pivot must already be imported: the new root
            # has no Python (python-prctl's C module, for capabilities)
            security.preload()
            if overlay is not None:
                overlay.mount()
            rootfs.enter(root, volumes, read_only,
                         etc if os.path.isdir(etc) else None, mask=not policy.privileged)
            if overlay is not None and spec.cwd and not read_only:
                # an image's WorkingDir need not exist in it (docker makes it);
                # made by a walk inside the root: a plain makedirs followed the
                # image's /proc/self/fd/N/.. to a directory fd still open here
                # and made the directory on the host
                _make_dir_in_root(spec.cwd)
        else:
            # the pod's /etc/hosts, hostname, resolv.conf over the host's, privately
            etcfiles.bind_into(etc, "/")
            rootfs.bind_volumes(volumes)
            if not policy.privileged:
                security.mask_host()
        env = security.apply_security(policy, "/")
        return {k: v for k, v in env.items() if k not in explicit}  # -e wins

    return prepare, cgroup_fds, enter_cgroup, bpf


def _make_dir_in_root(path: str) -> None:
    """mkdir -p path in this process's root, never through a magic link (rootfs.resolve_in)."""
    from nspod import rootfs

    try:
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.close(rootfs.resolve_in(root, path, create="dir"))
        finally:
            os.close(root)
    except OSError:
        pass  # the chdir after says what is wrong


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


def _oom_kills(pod: Pod) -> int | None:
    from nspod import cgroups

    return cgroups.oom_kills(pod.rec.get("spec", {}).get("cgroups") or [])


def _drop_record(pod: Pod, name: str) -> None:
    """A join that failed before its member ran leaves neither record nor log."""
    for path in (pod.path("members", f"{name}.json"), pod.path("logs", f"{name}.log")):
        try:
            os.unlink(path)
        except OSError:
            pass


MAX_ENDED = 100  # ended members whose records ps keeps showing, per pod


def _prune(pod: Pod) -> None:
    """Keeps the records of at most MAX_ENDED ended members: the oldest go.

    One listdir while under the bound (join's path); running members are
    never touched.
    """
    try:
        if len(os.listdir(pod.path("members"))) <= MAX_ENDED:
            return
    except FileNotFoundError:
        return
    records_fd = os.open(pod.path("exits"),
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _prune_open(pod, records_fd)
    finally:
        os.close(records_fd)


def _prune_open(pod: Pod, records_fd: int) -> None:
    stale = time.time() - 60
    with os.scandir(pod.path("members")) as entries:
        for e in entries:  # claims of joins killed before they wrote the record
            st = e.stat(follow_symlinks=False)
            if e.name.endswith(".json") and st.st_size == 0 and st.st_mtime < stale:
                _forget(pod, records_fd, e.name[:-5], 0, 0)
    ended = []
    for rec, _path in member_records(pod, skip_damaged=True):
        state, finished = _member_state(pod, rec)
        if state != "running":
            ended.append((finished or rec["started"], rec))
    ended.sort(key=lambda e: e[0])
    for _, rec in ended[:max(len(ended) - MAX_ENDED, 0)]:
        _forget(pod, records_fd, rec["name"], rec.get("pod_pid", 0), rec.get("logger_pid", 0))


def _forget(pod: Pod, records_fd: int, name: str, pod_pid: int, logger_pid: int) -> None:
    """Removes an ended member's files: record, exit records, logs."""
    for path, fd in ((pod.path("members", f"{name}.json"), None),
                     (pod.path("logs", f"{name}.log"), None),
                     (pod.path("logs", f"{name}.log.1"), None),
                     (str(pod_pid), records_fd), (str(logger_pid), records_fd)):
        if path == "0":
            continue
        try:
            os.unlink(path, dir_fd=fd)
        except OSError:
            pass


def _finish_stale(pod: Pod, exits_fd: int, pod_pid: int) -> None:
    """A pod pid is being reused: fold the old exit record into its member first."""
    old = spawn.read_exit_record(exits_fd, pod_pid)
    if old is None:
        return
    for rec, path in member_records(pod, skip_damaged=True):  # a join must not fail on them
        if rec.get("pod_pid") == pod_pid and "status" not in rec:
            rec["status"], rec["finished"] = old
            lean.write_atomic(path, lean.dumps(rec), sync=False)


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def read_member(path: str) -> dict[str, Any] | None:
    """A member's record; None while its name is claimed and the record not yet written."""
    return records.read_claimed(path, records.MEMBER, records.MEMBER_REQUIRED)


def member_records(pod: Pod, skip_damaged: bool = False) -> Iterator[tuple[dict[str, Any], str]]:
    """Each member record of the pod with its path; claimed ones not yet written are skipped."""
    try:
        names = sorted(os.listdir(pod.path("members")))
    except FileNotFoundError:
        return
    for fname in names:
        if not fname.endswith(".json") or fname.startswith("."):
            continue
        path = pod.path("members", fname)
        try:
            rec = read_member(path)
        except FileNotFoundError:
            continue  # removed meanwhile
        except DamagedRecord:
            if skip_damaged:
                continue
            raise
        if rec is not None:
            yield rec, path


def member_state(pod: Pod, rec: dict[str, Any]) -> tuple[str, float | None]:
    """('running' | 'exited (N)' | 'killed (SIGNAME)', finish time).

    A SIGKILL while the pod's cgroup counted a new OOM kill reads
    'killed (SIGKILL, out of memory)'.
    """
    state, finished = _member_state(pod, rec)
    if state == "killed (SIGKILL)" and rec.get("oom_kills") is not None:
        now = _oom_kills(pod)
        if now is not None and now > rec["oom_kills"]:
            state = "killed (SIGKILL, out of memory)"
    return state, finished


def _member_state(pod: Pod, rec: dict[str, Any]) -> tuple[str, float | None]:
    status, finished = run_status(pod, rec)
    if status is None:
        return "running", None
    return describe_status(status), finished


def run_status(pod: Pod, rec: dict[str, Any]) -> tuple[int | None, float | None]:
    """(wait status, end time) of the member's current run; (None, None) while it runs."""
    if "status" in rec:
        return rec["status"], rec.get("finished")
    try:
        fd = os.open(pod.path("exits"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    if fd >= 0:
        try:
            got = spawn.read_exit_record(fd, rec.get("pod_pid", 0))
        finally:
            os.close(fd)
        if got is not None:
            return got
    if rec.get("host_pid") and lean.proc_start(rec["host_pid"]) == rec.get("pid_start"):
        return None, None
    # Gone with no record: the pod died under it (the kernel SIGKILLs a PID
    # namespace whose init dies) or the member never started.
    return int(signal.SIGKILL), pod.rec.get("finished") or time.time()


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        import signal as sigmod

        sig = os.WTERMSIG(status)
        try:
            return f"killed ({sigmod.Signals(sig).name})"
        except ValueError:
            return f"killed (signal {sig})"
    return f"exited ({os.WEXITSTATUS(status)})"
