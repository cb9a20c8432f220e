"""The verbs on members already started: ps, kill (logs: logread.py).

    ROOT/pods/POD/members/NAME.json   one record per member started by join
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os

from nspod import lean
from nspod.errors import NspodError, os_reason
from nspod.member import Pod, describe_status, member_records, member_state, read_member

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def ps(root: str, pod_name: str) -> list[dict[str, Any]]:
    from nspod import monitor

    pod = Pod(root, pod_name)
    monitor.ensure_for(pod)
    out = []
    for rec, _ in member_records(pod):
        if "pod_pid" not in rec:
            continue
        state, finished = member_state(pod, rec)
        out.append({
            "name": rec["name"],
            "pid": rec["host_pid"],
            "pod_pid": rec["pod_pid"],
            "command": rec["argv"],
            "state": state,
            "detached": rec.get("detached", False),
            "started": rec["started"],
            "finished": finished,
            "restart": rec.get("restart", "no"),
            "restarts": rec.get("restarts", 0),
            "last_status": (describe_status(rec["last_status"])
                            if rec.get("last_status") is not None else None),
        })
        if rec.get("health"):
            from nspod import health

            out[-1]["health"] = health.status(pod, rec)
    out.sort(key=lambda m: m["started"])
    return out


def find_member(pod: Pod, name: str) -> dict[str, Any]:
    lean.check_name(name, "member name")
    try:
        rec = read_member(pod.path("members", f"{name}.json"))
    except FileNotFoundError:
        rec = None
    if rec is None:
        raise NspodError(f'pod "{pod.name}": no member "{name}"')
    return rec


# -- kill -------------------------------------------------------------------------


def parse_signal(text: str) -> int:
    import signal as sigmod

    t = text.upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
        raise ValueError(f"{text!r} is not a signal number")
    if not t.startswith("SIG"):
        t = "SIG" + t
    sig = getattr(sigmod, t, None)
    if not isinstance(sig, sigmod.Signals):
        raise ValueError(f"unknown signal {text!r}")
    return int(sig)


STOPPING_SIGNALS = (2, 3, 9, 15)  # INT, QUIT, KILL, TERM: a kill that means "stay down"


def kill_member(root: str, pod_name: str, name: str, sig: int) -> None:
    pod = Pod(root, pod_name)
    rec = find_member(pod, name)
    if rec.get("restart", "no") != "no" and sig in STOPPING_SIGNALS:
        # under the pod's lock, which the monitor holds to restart: the run is
        # marked before it gets the signal, so its end is not restarted
        from nspod import monitor, persist

        with monitor.pod_lock(pod.dir):
            rec = find_member(pod, name)
            if member_state(pod, rec)[0] == "running":
                rec["user_stopped"] = True
                lean.write_atomic(pod.path("members", f"{name}.json"), lean.dumps(rec),
                                  sync=False)
                persist.save_member(pod.dir, rec)  # unless-stopped stays down after a reboot
            _kill_run(pod, name, rec, sig)
        return
    _kill_run(pod, name, rec, sig)


def _kill_run(pod: Pod, name: str, rec: dict[str, Any], sig: int) -> None:
    if member_state(pod, rec)[0] != "running":
        raise NspodError(f'kill: member "{name}" is not running')
    try:
        fd = os.pidfd_open(rec["host_pid"])
    except ProcessLookupError:
        raise NspodError(f'kill: member "{name}" is not running') from None
    try:
        # checked after opening the pidfd: the pidfd then names this very process
        if lean.proc_start(rec["host_pid"]) != rec.get("pid_start"):
            raise NspodError(f'kill: member "{name}" is not running')
        signal.pidfd_send_signal(fd, sig)
    except OSError as e:
        raise NspodError(f'kill member "{name}": {os_reason(e)}') from e
    finally:
        os.close(fd)
