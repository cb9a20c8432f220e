"""The monitor process itself (monitor.start runs main): restarts members per
their policy, runs their health checks, decides only from what is on disk.
monitor.py is the verbs' side: mark, poke, start, kill.
"""

from __future__ import annotations

import _signal as signal
import os
import select
import sys
import time

from nspod import lean
from nspod.errors import NoSuchPod, NspodError
from nspod.monitor import FIFO, LOCK, PIDFILE, pod_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nspod.health import Check
    from nspod.member import Pod

RECORD_GRACE = 1.0  # seconds a gone member may lack pause's exit record


class _Monitor:
    def __init__(self, pdir: str) -> None:
        from nspod import member

        self.pdir = pdir
        self.root = os.path.dirname(os.path.dirname(pdir))
        self.name = os.path.basename(pdir)
        self.member = member
        self.pod: Pod = member.Pod(self.root, self.name)
        self.pidfds: dict[tuple[str, int, int], int] = {}  # run -> pidfd
        self.checks: dict[str, Check] = {}  # member name -> health check in flight
        self.gone: dict[tuple[str, int, int], float] = {}  # run -> seen gone, no record yet
        self.kept: dict[str, str] = {}  # member -> what persist last kept of it
        self.fifo = -1
        self.pause_fd = -1

    def log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.write(2, f"{stamp} {text}\n".encode())

    def setup(self) -> bool:
        """Joins the pod's cgroup, opens pause's pidfd and the FIFO. False: nothing to do."""
        from nspod import cgroups

        if not self.pod.running():
            return False
        fds = cgroups.open_procs(cgroups.children(
            self.pod.rec.get("spec", {}).get("cgroups") or [], cgroups.MEMBERS))
        try:
            cgroups.enter(fds)  # charged to the pod, as its members are
        finally:
            cgroups.close(fds)
        self.pause_fd = os.pidfd_open(self.pod.rec["pid"])
        if not self.pod.pause_alive():
            return False
        path = os.path.join(self.pdir, FIFO)
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            pass
        # read-write: the FIFO never reports EOF when a writer leaves
        self.fifo = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        return True

    def run(self) -> None:
        while True:
            now = time.time()
            wake = self.step(now)
            poller = select.poll()
            for fd in (self.fifo, self.pause_fd, *self.pidfds.values(),
                       *(c.pidfd for c in self.checks.values())):
                poller.register(fd, select.POLLIN)
            timeout = max(0.0, wake - time.time())
            ready = {fd for fd, _ in poller.poll(min(timeout, 3600.0) * 1000)}
            if self.fifo in ready:
                try:
                    while os.read(self.fifo, 4096):
                        pass
                except BlockingIOError:
                    pass
            if self.pause_fd in ready:
                return  # the pod died or was stopped: nothing left to look after

    def step(self, now: float) -> float:
        """Acts on every supervised member; returns when to look again."""
        from nspod import policy

        wake = now + 3600.0
        seen = set()
        for rec, _ in self.member.member_records(self.pod, skip_damaged=True):
            if "pod_pid" not in rec or not policy.supervised(rec):
                continue
            name = rec["name"]
            if rec.get("restart", "no") != "no":
                self._keep(rec)
            run = (name, rec.get("host_pid", 0), rec.get("pid_start", 0))
            status, finished = self._status(rec, run, now)
            if status is None and finished is None:  # running
                seen.add(run)
                if run not in self.pidfds:
                    try:
                        self.pidfds[run] = os.pidfd_open(run[1])
                    except OSError:
                        wake = min(wake, now + 0.01)
                        continue
                if rec.get("health"):
                    wake = min(wake, self._health(rec, now))
                continue
            if status is None:  # gone, pause's record not yet written
                wake = min(wake, now + 0.01)
                continue
            self._drop_check(name)
            if policy.will_restart(rec, status):
                assert finished is not None
                delay = policy.next_delay(rec, finished)
                due = finished + delay
                if due <= now:
                    self._restart(rec, run, status, finished, delay)
                    wake = min(wake, time.time() + 0.01)
                else:
                    wake = min(wake, due)
        for run in [r for r in self.pidfds if r not in seen]:
            os.close(self.pidfds.pop(run))
        return wake

    def _keep(self, rec: dict[str, Any]) -> None:
        """What a reboot needs of the member, in storage: written when it changes
        (a new member, a restart), not on join's path."""
        from nspod import persist

        text = persist.member_text(rec)
        if self.kept.get(rec["name"]) != text:
            try:
                persist.save_member(self.pdir, rec, text)
            except OSError as e:
                self.log(f"{rec['name']}: cannot keep it for a reboot: {e}")
                return
            self.kept[rec["name"]] = text

    def _status(self, rec: dict[str, Any], run: tuple[str, int, int],
                now: float) -> tuple[int | None, float | None]:
        """(status, end) of the current run; (None, None) running; (None, t) ending."""
        from nspod import exits

        if "status" in rec:
            return rec["status"], rec.get("finished")
        if run[1] and lean.proc_start(run[1]) == run[2]:
            return None, None
        fd = os.open(self.pod.path("exits"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            got = exits.read_exit_record(fd, rec.get("pod_pid", 0))
        finally:
            os.close(fd)
        if got is not None:
            self.gone.pop(run, None)
            return got
        # gone without a record: pause writes it just after the pidfd turns readable
        first = self.gone.setdefault(run, now)
        if self.pod.pause_alive() and now - first < RECORD_GRACE:
            return None, now
        self.gone.pop(run, None)
        return int(signal.SIGKILL), now

    def _restart(self, rec: dict[str, Any], run: tuple[str, int, int], status: int,
                 finished: float, delay: float) -> None:
        from nspod import policy

        name = run[0]
        path = self.pod.path("members", f"{name}.json")
        with pod_lock(self.pdir):
            # as it is now: stop, kill or another monitor may have come first
            self.pod = self.member.Pod(self.root, self.name)
            if not self.pod.running():
                return
            try:
                rec = lean.loads(lean.read_text(path))
            except (OSError, ValueError):
                return
            if (rec.get("host_pid"), rec.get("pid_start")) != run[1:]:
                return
            if not policy.will_restart(rec, status):
                return
            carry = {"restarts": int(rec.get("restarts", 0)) + 1, "backoff": delay,
                     "last_status": status, "last_finished": finished}
            from nspod.runspec import join_spec

            spec = join_spec(self.name, name, rec)
            spec.carry = carry
            from nspod.poddir import checkpoint

            checkpoint("monitor-restart")
            try:
                self.member.join(self.root, spec)
                checkpoint("monitor-restarted")
                self.log(f"{name}: restarted (run {carry['restarts'] + 1})")
            except NspodError as e:
                # counted as a run that failed at once: the backoff grows
                self.log(f"{name}: restart failed: {e}")
                now = time.time()
                rec.update(carry)
                rec.update(status=e.code << 8, finished=now, started=now, restart_error=str(e))
                lean.write_atomic(path, lean.dumps(rec), sync=False)
                return
        for pid in (rec.get("pod_pid"), rec.get("logger_pid")):
            if pid:  # the ended run's exit records: its status lives on in last_status
                try:
                    os.unlink(self.pod.path("exits", str(pid)))
                except OSError:
                    pass

    def _health(self, rec: dict[str, Any], now: float) -> float:
        from nspod import health

        name = rec["name"]
        check = self.checks.get(name)
        if check is not None:
            if not check.done() and now < check.deadline:
                return check.deadline
            self.checks.pop(name)
            code, output = check.finish()
            health.record(self.pod, rec, code, output, check.started, time.time())
            return now + 0.01
        action = health.pending_action(self.pod, rec)
        if action:  # recorded with the result that made it unhealthy; done once, then cleared
            self.log(f"{name}: unhealthy, {action}")
            health.act(self.pod, rec, action)
            return now + 0.01
        due = health.due(self.pod, rec)
        if due > now:
            return due
        try:
            self.checks[name] = health.start_check(self.pod, rec)
        except NspodError as e:
            started = time.time()
            health.record(self.pod, rec, -1, str(e).encode(), started, started)
            return now + 0.01
        return self.checks[name].deadline

    def _drop_check(self, name: str) -> None:
        check = self.checks.pop(name, None)
        if check is not None:
            check.abandon()


def main(argv: list[str]) -> int:
    import fcntl

    pdir = argv[0]
    os.chdir("/")
    try:
        lock = os.open(os.path.join(pdir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return 0  # the pod is gone
    deadline = time.monotonic() + 2.0
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                return 0  # another monitor runs
            time.sleep(0.05)
    import _prctl  # python-prctl's C module, as security.py

    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)
    try:
        # under the pod's lock: a stop in progress finishes first, and then the
        # pod is not running; stop kills only a monitor whose pid file it finds
        with pod_lock(pdir):
            mon = _Monitor(pdir)
            if not mon.setup():
                return 0
            start_time = lean.proc_start(os.getpid())
            lean.write_atomic(os.path.join(pdir, PIDFILE), f"{os.getpid()} {start_time}\n",
                              sync=False)
        mon.run()
    except NoSuchPod:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
