"""Health checks: run a member's --health-cmd in its namespaces, keep the results.

    ROOT/pods/POD/health/NAME.json   {"run": [HOST_PID, START], "status", "failing",
                                      "last", "log": [the last results]}

The check is a join into the running member's own mount namespace
(/proc/PID/ns/mnt: its root, its volumes), with its user and capabilities,
in the pod's cgroup. The monitor runs it on its interval; `nspod healthcheck
run` runs it once.
"""

from __future__ import annotations

import _signal as signal
import os
import select
import time

from nspod import exits, lean, policy, spawn
from nspod import syscalls as sc
from nspod.errors import NspodError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nspod.member import Pod

STARTING_INTERVAL = 1.0  # at most this between checks until the first success


def _path(pod: Pod, name: str) -> str:
    return pod.path("health", f"{name}.json")


def _run(rec: dict[str, Any]) -> list[int]:
    return [rec.get("host_pid", 0), rec.get("pid_start", 0)]


def load(pod: Pod, rec: dict[str, Any]) -> dict[str, Any]:
    """The health state of the member's current run (a new run starts afresh)."""
    try:
        state: dict[str, Any] = lean.loads(lean.read_text(_path(pod, rec["name"])))
    except (OSError, ValueError):
        state = {}
    fresh = {"run": _run(rec), "status": "starting", "failing": 0, "last": 0.0,
             "log": state.get("log", [])}
    return state if state.get("run") == _run(rec) else fresh


def status(pod: Pod, rec: dict[str, Any]) -> str:
    return str(load(pod, rec)["status"])


def due(pod: Pod, rec: dict[str, Any]) -> float:
    """When the next check of the running member is due."""
    state = load(pod, rec)
    interval = float(rec["health"]["interval"])
    if state["status"] == "starting":
        interval = min(interval, STARTING_INTERVAL)
    return float(state["last"]) + interval if state["last"] else 0.0


class Check:
    """A health check in flight."""

    def __init__(self, pod: Pod, member: spawn.Member, out: int, started: float,
                 timeout: float) -> None:
        self.pod = pod
        self.member = member
        self.pidfd = member.pidfd
        self.out = out
        self.started = started
        self.deadline = started + timeout
        self.output = b""

    def done(self) -> bool:
        self._drain()
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def _drain(self) -> None:
        while select.select([self.out], [], [], 0)[0]:
            chunk = os.read(self.out, 65536)
            if not chunk:
                break
            if len(self.output) < policy.HEALTH_OUTPUT:
                self.output += chunk

    def finish(self) -> tuple[int, bytes]:
        """Its exit code (-1: timed out), its output; kills it when past its deadline."""
        if not self.done():
            self.abandon()
            return -1, self.output + b"health check timed out\n"
        self._drain()
        status = self._status()
        self._close()
        return exits.exit_code(status), self.output[:policy.HEALTH_OUTPUT]

    def _status(self) -> int:
        fd = os.open(self.pod.path("exits"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + 1.0
            while (got := exits.read_exit(fd, self.member.pod_pid)) is None:
                if time.monotonic() > deadline:
                    return int(signal.SIGKILL)
                time.sleep(0.001)
            return got
        finally:
            os.close(fd)

    def abandon(self) -> None:
        """Kills the check and whatever it started (its process group)."""
        try:
            os.killpg(self.member.host_pid, signal.SIGKILL)
        except OSError:
            pass
        select.select([self.pidfd], [], [], 2.0)
        self._close()

    def _close(self) -> None:
        for fd in (self.pidfd, self.out):
            try:
                os.close(fd)
            except OSError:
                pass
        self.pidfd = self.out = -1
        try:
            os.unlink(self.pod.path("exits", str(self.member.pod_pid)))
        except OSError:
            pass


def start_check(pod: Pod, rec: dict[str, Any]) -> Check:
    """Starts the member's health command in its namespaces; returns at once."""
    from nspod import cgroups, seccomp, security

    host_pid = rec["host_pid"]
    mnt = f"/proc/{host_pid}/ns/mnt"
    if lean.proc_start(host_pid) != rec.get("pid_start"):
        raise NspodError(f'healthcheck: member "{rec["name"]}" is not running')
    s = rec.get("spec", {})
    pol = security.resolve(security.SecurityOpts.from_spec(pod.rec.get("spec", {})),
                           security.SecurityOpts.from_spec(s["security"])
                           if s.get("security") else security.SecurityOpts(), s.get("user"))
    # the member's own filter: a check can do no more than the member
    bpf = seccomp.member_filter(pod.dir, pod.rec.get("spec", {}).get("seccomp"),
                                s.get("seccomp"), pol.caps, pol.privileged)
    security.preload()  # the member's root may have no Python
    cgroup_fds = cgroups.open_procs(cgroups.children(pod.rec.get("spec", {}).get("cgroups") or [],
                                                     cgroups.MEMBERS))

    def prepare() -> dict[str, str]:
        cgroups.enter(cgroup_fds)
        return security.apply_security(pol, "/")

    from nspod.member import member_env

    # the member's own namespaces (the pod's ipc, uts, net and pid, its mount
    # namespace), checked by its start time again once the check started
    ns: dict[str, str | int] = {k: f"/proc/{host_pid}/ns/{k}" for k in sc.NS_KINDS}
    ns["mnt"] = mnt
    mspec = spawn.MemberSpec(["/bin/sh", "-c", rec["health"]["cmd"]],
                             member_env(dict(s.get("env") or {}), pod.rec.get("hostname", "")),
                             s.get("cwd"), ns, prepare, seccomp=bpf, keep_fds=cgroup_fds)
    records = os.open(pod.path("exits"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def on_started(_host: int, pod_pid: int, _logger: int) -> None:
        os.close(os.open(str(pod_pid), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o644, dir_fd=records))

    r, w = os.pipe2(os.O_CLOEXEC)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    mspec.stdio = (null, w, w)  # its output to us; no terminal, no stdin
    started = time.time()
    try:
        m = spawn.start_member(mspec, on_started)
    except BaseException:
        os.close(r)
        raise
    finally:
        for fd in (w, null, records, *cgroup_fds):
            os.close(fd)
    # the member may have ended meanwhile: then this check ran in a recycled pid's namespace
    if lean.proc_start(host_pid) != rec.get("pid_start"):
        check = Check(pod, m, r, started, 0)
        check.abandon()
        raise NspodError(f'healthcheck: member "{rec["name"]}" is not running')
    return Check(pod, m, r, started, float(rec["health"]["timeout"]))


def record(pod: Pod, rec: dict[str, Any], code: int, output: bytes, started: float,
           ended: float) -> dict[str, Any]:
    """Adds a result to the member's health state; returns the state.

    state["action"] is set ("kill" or "restart") when this result made the
    member unhealthy and its --health-on-failure says to act.
    """
    h = rec["health"]
    state = load(pod, rec)
    entry = {"start": started, "end": ended, "exit_code": code,
             "output": output.decode(errors="replace")}
    state["log"] = (state.get("log", []) + [entry])[-policy.HEALTH_LOG:]
    state["last"] = started
    before = state["status"]
    if code == 0:
        state["failing"] = 0
        state["status"] = "healthy"
    elif started - float(rec.get("started", 0)) >= float(h["start_period"]) or before != "starting":
        state["failing"] = int(state["failing"]) + 1
        if state["failing"] >= int(h["retries"]):
            state["status"] = "unhealthy"
            if before != "unhealthy" and h.get("on_failure", "none") != "none":
                state["action"] = h["on_failure"]
    os.makedirs(pod.path("health"), exist_ok=True)
    lean.write_atomic(_path(pod, rec["name"]), lean.dumps(state), sync=False)
    return state


def pending_action(pod: Pod, rec: dict[str, Any]) -> str | None:
    """The --health-on-failure action a result asked for and nobody has done yet."""
    action = load(pod, rec).get("action")
    return str(action) if action else None


def act(pod: Pod, rec: dict[str, Any], action: str) -> None:
    """--health-on-failure: kill the run (its policy decides), or restart it.

    The action stays in the health state until done (a monitor killed in
    between does it on its next pass), and is done once: under the pod's
    lock, for this run only, then cleared.
    """
    from nspod import monitor

    path = pod.path("members", f"{rec['name']}.json")
    with monitor.pod_lock(pod.dir):
        _act(pod, rec, action, path)
        state = load(pod, rec)
        if state.get("action"):
            state.pop("action")
            lean.write_atomic(_path(pod, rec["name"]), lean.dumps(state), sync=False)


def _act(pod: Pod, rec: dict[str, Any], action: str, path: str) -> None:
    try:
        now = lean.loads(lean.read_text(path))
    except (OSError, ValueError):
        return
    if _run(now) != _run(rec) or lean.proc_start(rec["host_pid"]) != rec.get("pid_start"):
        return  # that run is over already
    if action == "restart":
        now["health_restart"] = True
        lean.write_atomic(path, lean.dumps(now), sync=False)
    try:
        fd = os.pidfd_open(rec["host_pid"])
    except OSError:
        return
    try:
        if lean.proc_start(rec["host_pid"]) == rec.get("pid_start"):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        os.close(fd)




def members_view(root: str, pod_name: str) -> list[dict[str, Any]]:
    """inspect's members: ps's fields, and each health check's state and last results."""
    from nspod import member, memberctl

    out = memberctl.ps(root, pod_name)
    pod = member.Pod(root, pod_name)
    for m in out:
        if "health" in m:
            try:
                rec = memberctl.find_member(pod, m["name"])
            except NspodError:
                continue
            state = load(pod, rec)
            m["healthcheck"] = {"status": state["status"], "failing_streak": state["failing"],
                                "log": state.get("log", [])}
    return out


def run_once(pod: Pod, rec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """`nspod healthcheck run`: one check now, recorded and acted on as the monitor would."""
    if not rec.get("health"):
        raise NspodError(f'healthcheck: member "{rec["name"]}" has no health check')
    check = start_check(pod, rec)
    select.select([check.pidfd], [], [], max(0.0, check.deadline - time.time()))
    code, output = check.finish()
    state = record(pod, rec, code, output, check.started, time.time())
    if state.get("action"):
        act(pod, rec, state["action"])
        state.pop("action")
    return code, state
