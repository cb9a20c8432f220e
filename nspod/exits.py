"""A member's end: waiting for it (forwarding signals meanwhile), and the exit
records pause writes (ROOT/pods/POD/exits/PODPID: "STATUS MILLISECONDS\n").

Kept lean on purpose: `nspod join` imports it (a foreground member is waited for here).
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os
import select
import time

from nspod.spawn import FORWARDED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from nspod.spawn import Member


def wait_member(
    member: Member,
    records_fd: int,
    pause_alive: Callable[[], bool],
    relay: Callable[[select.poll, int], bool] | None = None,
) -> int:
    """Waits for a member to exit; returns its raw wait status from pause's record.

    Forwards FORWARDED signals sent to nspod to the member meanwhile, those
    held (blocked) since before start_member included. relay,
    when given, is called with the poller and each ready fd that is not the
    member's pidfd (a terminal relay registers its fds on the poller).
    """

    def forward(sig: int, _frame: object) -> None:
        try:
            signal.pidfd_send_signal(member.pidfd, sig)
        except ProcessLookupError:
            pass

    old = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # held since before the start
    try:
        poller = select.poll()
        poller.register(member.pidfd, select.POLLIN)
        if relay is not None:
            relay(poller, -1)
        done = False
        while not done:
            for fd, _ in poller.poll():
                if fd == member.pidfd:
                    done = True
                elif relay is not None:
                    relay(poller, fd)
        if relay is not None:
            relay(poller, -2)  # drain what is left
        # The member is a zombie now; pause reaps it and writes the record.
        deadline = time.monotonic() + 5.0
        delay = 0.0001
        while True:
            status = read_exit(records_fd, member.pod_pid)
            if status is not None:
                return status
            if time.monotonic() > deadline or not pause_alive():
                return int(signal.SIGKILL)  # the pod died under it
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        os.close(member.pidfd)


def read_exit(records_fd: int, pod_pid: int) -> int | None:
    """The wait status pause recorded for pod_pid, or None while it runs."""
    rec = read_exit_record(records_fd, pod_pid)
    return None if rec is None else rec[0]


def read_exit_record(records_fd: int, pod_pid: int) -> tuple[int, float] | None:
    """(wait status, unix time) pause recorded for pod_pid, or None."""
    try:
        fd = os.open(str(pod_pid), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=records_fd)
    except OSError:
        return None  # none, or not a record (a symlink planted there: ELOOP)
    try:
        data = os.read(fd, 256)
    finally:
        os.close(fd)
    if not data.endswith(b"\n"):
        return None
    try:
        status, ms = data.split()[:2]
        return int(status), int(ms) / 1000.0
    except ValueError:
        return None


def exit_code(status: int) -> int:
    """Shell-style exit code of a wait status: N, or 128+signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
