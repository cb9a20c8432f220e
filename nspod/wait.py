"""`nspod wait`: block until a pod or its members reach a condition.

Reads the records only (no monitor needed for running and stopped): every
20 ms at first, backing off to 100 ms.
"""

from __future__ import annotations

import time

from nspod import exits, lean, member, monitor, policy
from nspod.errors import NspodError, UsageError
from nspod.memberctl import find_member

CONDITIONS = ("stopped", "running", "healthy")
LOG_DRAIN = 2.0  # seconds stopped waits for the logger after the member ended


class WaitTimeout(NspodError):
    pass


def _member_now(pod: member.Pod, name: str, condition: str) -> int | None:
    """None while the member is not there yet; its exit code (or 0) once it is."""
    rec = find_member(pod, name)
    if "pod_pid" not in rec:
        return None  # claimed, not started yet
    status, finished = member.run_status(pod, rec)
    if condition == "running":
        return 0 if status is None else None
    if condition == "healthy":
        if not rec.get("health"):
            raise NspodError(f'wait: member "{name}" has no health check')
        from nspod import health

        return 0 if status is None and health.status(pod, rec) == "healthy" else None
    if status is None:
        return None
    if pod.running() and policy.will_restart(rec, status):
        return None  # it will run again
    from nspod.logread import logger_done

    if pod.pause_alive() and time.time() - (finished or 0) < LOG_DRAIN and \
            not logger_done(pod, rec):
        return None  # its last output is on its way to the log (unless a child keeps it)
    return exits.exit_code(status)


def _pod_now(root: str, pod: member.Pod, condition: str) -> int | None:
    if condition == "stopped":
        return None if pod.running() else 0
    if not pod.running():
        return None
    if condition == "running":
        return 0
    checked = [rec for rec, _ in member.member_records(pod) if rec.get("health")]
    if not checked:
        raise NspodError(f'wait: no member of pod "{pod.name}" has a health check')
    from nspod import health

    for rec in checked:
        if member.run_status(pod, rec)[0] is not None or health.status(pod, rec) != "healthy":
            return None
    return 0


def wait(root: str, pod_name: str, names: list[str], condition: str,
         timeout: float | None) -> list[int]:
    """Blocks until condition holds for the pod or every named member.

    Returns one code per member (its exit code for stopped, else 0).
    """
    if condition not in CONDITIONS:
        raise UsageError(f"wait: --condition {condition!r}: use one of {', '.join(CONDITIONS)}")
    for name in names:
        if not lean.valid_name(name):
            raise UsageError(f"invalid member name {name!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.02
    codes: dict[str, int] = {}
    pod = member.Pod(root, pod_name)
    monitor.ensure_for(pod)
    while True:
        pod = member.Pod(root, pod_name)
        if names:
            for name in names:
                if name not in codes:
                    code = _member_now(pod, name, condition)
                    if code is not None:
                        codes[name] = code
            if len(codes) == len(names):
                return [codes[n] for n in names]
        elif _pod_now(root, pod, condition) is not None:
            return []
        if deadline is not None and time.monotonic() >= deadline:
            what = f'pod "{pod_name}"' if not names else ", ".join(
                f'member "{n}"' for n in names if n not in codes)
            raise WaitTimeout(f"wait: {what} not {condition} after {timeout:g} s")
        time.sleep(delay if deadline is None else max(0.0, min(delay,
                                                              deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.1)


