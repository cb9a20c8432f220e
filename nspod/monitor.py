"""The per-pod monitor: restarts members per their policy, runs their health checks.

    ROOT/pods/POD/supervise      a member wants a monitor (made by join)
    ROOT/pods/POD/monitor.fifo   join and the verbs poke it; ENXIO: no monitor
    ROOT/pods/POD/monitor.lock   flock held by the one monitor for its life
    ROOT/pods/POD/monitor.pid    "PID START" of the monitor
    ROOT/pods/POD/monitor.log    its stderr

The verbs' side (mark, poke, start, kill); the monitor process itself is
monitord.py, run as `python -I -S -c '...main(POD_DIR)'` by start(). It keeps no state that is not
on disk: every decision is made from the member records and pause's exit
records, under the pod's lock, so a monitor killed at any point is replaced
by the next verb and carries on without losing or doubling a restart (see
DESIGN.md, "Members that come back").
"""

from __future__ import annotations

import _signal as signal
import errno
import os
import select
import sys

from nspod import lean
from nspod.errors import NoSuchPod, NspodError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nspod.member import Pod

MARKER = "supervise"
FIFO = "monitor.fifo"
LOCK = "monitor.lock"
PIDFILE = "monitor.pid"
LOG = "monitor.log"


def pod_lock(pdir: str):  # type: ignore[no-untyped-def]
    """The pod's lock (store.Store.lock): every verb that changes the pod takes it."""
    from nspod.store import _Flock

    name = os.path.basename(pdir)
    return _Flock(pdir, os.O_RDONLY | os.O_DIRECTORY,
                  missing=NoSuchPod(f'pod "{name}": no such pod'))


def want(pdir: str) -> None:
    """A member of the pod needs the monitor: mark the pod, wake or start it."""
    if not os.path.exists(os.path.join(pdir, MARKER)):
        os.close(os.open(os.path.join(pdir, MARKER), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                         0o600))
    ensure(pdir)


def ensure_for(pod: Pod) -> None:
    """The verbs' check: a pod whose members want a monitor gets one back if it
    died (one stat for a pod that wants none)."""
    if os.path.exists(pod.path(MARKER)) and pod.running():
        ensure(pod.dir)


def ensure(pdir: str) -> None:
    """Wakes the pod's monitor; starts one when none runs (it was killed, or is new)."""
    if not poke(pdir):
        start(pdir)


def poke(pdir: str) -> bool:
    """Wakes the monitor through its FIFO. False when no monitor reads it."""
    try:
        fd = os.open(os.path.join(pdir, FIFO), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, b"!")
    except BlockingIOError:
        pass  # full: it has plenty to wake on
    finally:
        os.close(fd)
    return True


def start(pdir: str) -> int:
    """Starts a monitor for the pod, not waited for; returns its pid.

    A second one started meanwhile finds the lock taken and leaves.
    """
    site = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"NSPOD_MONITOR": pdir,
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    if os.environ.get("NSPOD_STORAGE"):
        env["NSPOD_STORAGE"] = os.environ["NSPOD_STORAGE"]  # where it keeps members for a reboot
    if os.environ.get("NSPOD_KILL_AT", "").startswith("monitor-"):
        env["NSPOD_KILL_AT"] = os.environ["NSPOD_KILL_AT"]  # the tests' crash injection
    # -I: neither the caller's directory nor its PYTHON* variables choose the code
    code = (f"import sys; sys.path.insert(0, {site!r}); from nspod.monitord import main; "
            "sys.exit(main(sys.argv[1:]))")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.path.join(pdir, LOG),
         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 2, 1),
    ]
    return os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", code, pdir],
                          env, file_actions=actions, setsid=True)


def running_pid(pdir: str) -> int:
    """The live monitor's pid, or 0."""
    try:
        pid, start_time = (int(x) for x in lean.read_text(os.path.join(pdir, PIDFILE)).split())
    except (OSError, ValueError):
        return 0
    return pid if lean.proc_start(pid) == start_time else 0


def kill(pdir: str) -> None:
    """Ends the pod's monitor and waits until it is gone (stop, rm). Idempotent."""
    try:
        pid, start_time = (int(x) for x in lean.read_text(os.path.join(pdir, PIDFILE)).split())
    except (OSError, ValueError):
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if lean.proc_start(pid) != start_time:
            return  # checked after the pidfd is open: it names this very process
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], 5.0)
    finally:
        os.close(fd)


def kill_all(pdir: str) -> None:
    """rm, gc: no monitor of the pod outlives it, not even one still starting
    (it has no pid file until it holds the locks). Found by NSPOD_MONITOR in
    its environment, as gc finds a lost pause; only for pods that had one."""
    kill(pdir)
    if not os.path.exists(os.path.join(pdir, MARKER)):
        return
    tag = b"NSPOD_MONITOR=" + pdir.encode() + b"\0"
    fds = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if not f.read(len(tag)) == tag:
                    continue
            fd = os.pidfd_open(int(entry.name))
        except OSError:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            fds.append(fd)
        except OSError:
            os.close(fd)
    for fd in fds:
        select.select([fd], [], [], 5.0)
        os.close(fd)


# -- stop and start of the pod ----------------------------------------------------


def on_stop(pdir: str) -> None:
    """stop, under the pod's lock, before any member gets a signal.

    The monitor goes first, so no restart can follow; then every detached
    member still running is marked pod_stopped: its end is not restarted, and
    `start` runs it again. Members with a policy are kept for a reboot here
    too: a monitor stopped before its first look has not kept them yet.
    """
    kill(pdir)
    from nspod import member, persist

    try:
        pod = member.Pod(os.path.dirname(os.path.dirname(pdir)), os.path.basename(pdir))
    except NspodError:
        return
    for rec, path in member.member_records(pod, skip_damaged=True):
        if rec.get("detached") and "pod_pid" in rec and not rec.get("pod_stopped") \
                and member.run_status(pod, rec)[0] is None:
            rec["pod_stopped"] = True
            lean.write_atomic(path, lean.dumps(rec), sync=False)
        if rec.get("restart", "no") != "no":
            persist.save_member(pdir, rec)


def on_start(pdir: str) -> list[str]:
    """start, once the new pause runs: every member stop ended runs again.

    Restart counts are kept (a start is not a restart). Returns their names.
    Then the monitor, when a member wants one. Each member is marked until it
    runs again: a start killed or failed halfway is finished by the next
    `start` of the running pod. One member that cannot start (its rootfs
    gone) does not keep the others down: the first error is raised after.
    """
    from nspod import member
    from nspod.runspec import join_spec

    root, name = os.path.dirname(os.path.dirname(pdir)), os.path.basename(pdir)
    started = []
    failed: list[NspodError] = []
    with pod_lock(pdir):
        pod = member.Pod(root, name)
        for rec, _ in member.member_records(pod, skip_damaged=True):
            if not rec.get("pod_stopped") or "spec" not in rec:
                continue
            status, finished = member.run_status(pod, rec)
            if status is None:
                continue
            spec = join_spec(name, rec["name"], rec)
            spec.carry = {"restarts": int(rec.get("restarts", 0)), "last_status": status,
                          "last_finished": finished}
            try:
                member.join(root, spec)
            except NspodError as e:
                failed.append(e)
                continue
            started.append(rec["name"])
            from nspod.poddir import checkpoint

            checkpoint("start-member")
    if os.path.exists(os.path.join(pdir, MARKER)):
        ensure(pdir)
    if failed:
        raise failed[0]
    return started


def pending_start(pdir: str) -> bool:
    """Whether a member stop ended still waits for a start (one was cut short)."""
    from nspod import member

    try:
        pod = member.Pod(os.path.dirname(os.path.dirname(pdir)), os.path.basename(pdir))
    except NspodError:
        return False
    return any(rec.get("pod_stopped") and member.run_status(pod, rec)[0] is not None
               for rec, _ in member.member_records(pod, skip_damaged=True))


# -- the monitor process ------------------------------------------------------
