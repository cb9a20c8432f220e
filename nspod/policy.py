"""Restart policies, health-check options and the rules that read them.

Pure functions over member records (plain dicts, as member.py writes them):
the monitor, `wait`, `ps` and `start` all decide with the same code. Lean:
`join` imports it when given --restart or --health-*.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RESTART_KINDS = ("no", "on-failure", "always", "unless-stopped")
HEALTH_ACTIONS = ("none", "kill", "restart")
BACKOFF_FIRST = 0.1  # seconds: docker's restart manager
BACKOFF_CAP = 60.0
BACKOFF_RESET = 10.0  # a run this long resets the delay to BACKOFF_FIRST
HEALTH_DEFAULTS = {"interval": 30.0, "retries": 3, "start_period": 0.0, "timeout": 30.0,
                   "on_failure": "none"}
HEALTH_LOG = 5  # results kept
HEALTH_OUTPUT = 4096  # bytes of a check's output kept


def parse_restart(text: str) -> str:
    """no | on-failure[:N] | always | unless-stopped (ValueError otherwise)."""
    kind, colon, count = text.partition(":")
    if kind not in RESTART_KINDS:
        raise ValueError(f"{text!r}: use one of no, on-failure[:N], always, unless-stopped")
    if colon:
        if kind != "on-failure" or not count.isdigit():
            raise ValueError(f"{text!r}: only on-failure takes a count (on-failure:N)")
        return f"on-failure:{int(count)}"
    return kind


def split_restart(policy: str) -> tuple[str, int | None]:
    kind, _, count = policy.partition(":")
    return kind, int(count) if count else None


def parse_duration(text: str) -> float:
    """Seconds from 30s, 1m30s, 500ms, 2h or a plain number of seconds."""
    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        value = _units(t)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def _units(text: str) -> float:
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num, i = 0.0, "", 0
    if not text:
        raise ValueError("empty duration")
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in scale or not num:
            raise ValueError(f"{text!r} is not a duration (e.g. 30s, 1m, 500ms)")
        total += float(num) * scale[unit]
        num = ""
        i += len(unit)
    if num:
        raise ValueError(f"{text!r}: a number without a unit at the end")
    return total


def supervised(rec: dict[str, Any]) -> bool:
    """Whether the member needs the monitor: a restart policy or a health check."""
    return rec.get("restart", "no") != "no" or bool(rec.get("health"))


def failed(status: int) -> bool:
    return os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0


def will_restart(rec: dict[str, Any], status: int) -> bool:
    """Whether a run that ended with status is started again by its policy.

    A run the user stopped (stop of the pod, kill of the member) is not.
    """
    if rec.get("user_stopped") or rec.get("pod_stopped") or not rec.get("detached"):
        return False
    if rec.get("health_restart"):  # --health-on-failure restart, whatever the policy
        return True
    kind, most = split_restart(rec.get("restart", "no"))
    if kind == "no":
        return False
    if kind == "on-failure":
        return failed(status) and (most is None or int(rec.get("restarts", 0)) < most)
    return True


def next_delay(rec: dict[str, Any], finished: float) -> float:
    """The backoff before the next run: doubling from 100 ms, reset by a long run."""
    ran = finished - float(rec.get("started", finished))
    previous = rec.get("backoff")
    if previous is None or ran >= BACKOFF_RESET:
        return BACKOFF_FIRST
    return min(float(previous) * 2, BACKOFF_CAP)


def health_spec(cmd: str | None, interval: float | None, retries: int | None,
                start_period: float | None, timeout: float | None,
                on_failure: str | None) -> dict[str, Any] | None:
    """The record's health options, defaults filled in; None without --health-cmd."""
    given = (interval, retries, start_period, timeout, on_failure)
    if cmd is None:
        if any(v is not None for v in given):
            raise ValueError("--health-* options need --health-cmd")
        return None
    if on_failure is not None and on_failure not in HEALTH_ACTIONS:
        raise ValueError(f"--health-on-failure {on_failure!r}: use none, kill or restart")
    spec: dict[str, Any] = {"cmd": cmd, **HEALTH_DEFAULTS}
    for key, value in zip(("interval", "retries", "start_period", "timeout", "on_failure"),
                          given, strict=True):
        if value is not None:
            spec[key] = value
    if spec["interval"] <= 0 or spec["timeout"] <= 0 or spec["retries"] < 1:
        raise ValueError("--health-interval and --health-timeout must be > 0, "
                         "--health-retries >= 1")
    return spec
