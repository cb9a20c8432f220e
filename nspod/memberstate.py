"""A pod's member records, as the member verbs read them: the pod (lean), each
member's record and state, and the pruning of ended members' files.

    ROOT/pods/POD/members/NAME.json   one record per member started by join
    ROOT/pods/POD/exits/PODPID        its exit status, written by pause

Lean on purpose: `nspod join` imports this (through member.py).
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os
import time

from nspod import exits, lean, records
from nspod import syscalls as sc
from nspod.errors import DamagedRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


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


def oom_kills(pod: Pod) -> int | None:
    from nspod import cgroups

    return cgroups.oom_kills(pod.rec.get("spec", {}).get("cgroups") or [])


def drop_record(pod: Pod, name: str) -> None:
    """A join that failed before its member ran leaves neither record nor log."""
    for path in (pod.path("members", f"{name}.json"), pod.path("logs", f"{name}.log")):
        try:
            os.unlink(path)
        except OSError:
            pass


MAX_ENDED = 100  # ended members whose records ps keeps showing, per pod


def prune(pod: Pod) -> None:
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
                forget(pod, records_fd, e.name[:-5], 0, 0)
    ended = []
    for rec, _path in member_records(pod, skip_damaged=True):
        state, finished = _member_state(pod, rec)
        if state != "running":
            ended.append((finished or rec["started"], rec))
    ended.sort(key=lambda e: e[0])
    for _, rec in ended[:max(len(ended) - MAX_ENDED, 0)]:
        forget(pod, records_fd, rec["name"], rec.get("pod_pid", 0), rec.get("logger_pid", 0))


def forget(pod: Pod, records_fd: int, name: str, pod_pid: int, logger_pid: int) -> None:
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


def finish_stale(pod: Pod, exits_fd: int, pod_pid: int) -> None:
    """A pod pid is being reused: fold the old exit record into its member first."""
    old = exits.read_exit_record(exits_fd, pod_pid)
    if old is None:
        return
    for rec, path in member_records(pod, skip_damaged=True):  # a join must not fail on them
        if rec.get("pod_pid") == pod_pid and "status" not in rec:
            rec["status"], rec["finished"] = old
            lean.write_atomic(path, lean.dumps(rec), sync=False)


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
        now = oom_kills(pod)
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
            got = exits.read_exit_record(fd, rec.get("pod_pid", 0))
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
