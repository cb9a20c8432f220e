"""Finding and signalling a pod's processes, through pidfds (no pid reuse race)."""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os
import select
import time

from nspod.lean import proc_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from nspod.store import PodRecord


def pod_processes(rec: PodRecord) -> list[int]:
    """Host pids of every process in the pod's PID namespace but pause.

    The namespace is pause's (it holds it: the pid namespace has no pin), read
    only while pause is the process the record names.
    """
    try:
        ino = os.stat(f"/proc/{rec.pid}/ns/pid").st_ino
    except OSError:
        return []
    if proc_start(rec.pid) != rec.pid_start:
        return []  # pause died and its pid was reused: the pod has no process left
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == rec.pid:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/pid").st_ino == ino:
                out.append(pid)
        except OSError:
            continue
    return out


def signal_all(pids: Iterable[int], sig: int) -> list[int]:
    """Sends sig through pidfds; returns the pidfds of those still there."""
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            signal.pidfd_send_signal(fd, sig)
            fds.append(fd)
        except OSError:
            os.close(fd)
    return fds


def signal_pod(rec: PodRecord, sig: int) -> int:
    """Sends sig to every process of the pod but pause; returns how many got it."""
    fds = signal_all(pod_processes(rec), sig)
    for fd in fds:
        os.close(fd)
    return len(fds)


def wait_fds(fds: list[int], deadline: float) -> list[int]:
    """Waits until every pidfd is readable (exited) or deadline; returns the rest."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    left = set(fds)
    while left:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            break
        for fd, _ in poller.poll(timeout * 1000):
            poller.unregister(fd)
            left.discard(fd)
            os.close(fd)
    return list(left)


def stop_all(rec: PodRecord, timeout: float) -> None:
    """TERM to every process of the pod, KILL after timeout, pause last."""
    try:
        pause_fd = os.pidfd_open(rec.pid)
    except ProcessLookupError:
        return
    if proc_start(rec.pid) != rec.pid_start:
        os.close(pause_fd)
        return
    left = wait_fds(signal_all(pod_processes(rec), signal.SIGTERM),
                    time.monotonic() + timeout)
    for fd in left:
        os.close(fd)
    pause_left = [pause_fd]
    if not left:
        # All exited: TERM lets pause reap and record them first
        # (csrc/pause.c); a KILL would lose their exit statuses.
        signal.pidfd_send_signal(pause_fd, signal.SIGTERM)
        pause_left = wait_fds(pause_left, time.monotonic() + 2)
    if pause_left:
        # KILL pause: the kernel kills whatever is left in its PID namespace.
        signal.pidfd_send_signal(pause_fd, signal.SIGKILL)
        wait_fds(pause_left, time.monotonic() + 10)
