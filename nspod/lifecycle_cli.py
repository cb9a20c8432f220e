"""Verbs of members that come back: wait, healthcheck; what join's --restart, --health-* mean.

cli.py imports this only for these verbs (and --help), and join_extras only when
join is given one of the options (cli.LIFECYCLE_OPTS): join must start fast.
"""

from __future__ import annotations

from nspod.args import Opt, Parsed, Verb
from nspod.cli import _duration
from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

CODES = "exit codes: 0 success; 2 bad usage; 125 nspod failed (no such pod, timed out, ...)"


def join_extras(a: Parsed) -> dict[str, Any]:
    """JoinSpec keywords from the options above; usage errors when they don't fit."""
    from nspod import policy

    out: dict[str, Any] = {}
    try:
        health = policy.health_spec(a.health_cmd, a.health_interval, a.health_retries,
                                    a.health_start_period, a.health_timeout,
                                    a.health_on_failure)
    except ValueError as e:
        raise UsageError(f"join: {e}") from None
    if (a.restart not in (None, "no") or health) and not a.detach:
        raise UsageError("join: --restart and --health-cmd need -d")
    if a.restart is not None:
        out["restart"] = a.restart
    if health:
        out["health"] = health
    return out


def cmd_wait(a: Parsed, root: str) -> int:
    from nspod import wait

    for code in wait.wait(root, a.pod, a.name, a.condition, a.timeout):
        print(code)
    return 0


def cmd_healthcheck(a: Parsed, root: str) -> int:
    from nspod import health, member

    if a.action != "run":
        raise UsageError(f"healthcheck: unknown action {a.action!r} (use: run)")
    if not a.name:
        raise UsageError("healthcheck run: missing NAME")
    pod = member.Pod(root, a.pod)
    member._ensure_monitor(pod)
    code, state = health.run_once(pod, member.find_member(pod, a.name))
    print(state["status"])
    return 0 if code == 0 else 1


VERBS = (
    Verb(
        "wait",
        "Wait until a pod, or members of it, are stopped, running or healthy.",
        ("POD", "NAME*"),
        (
            Opt(("--condition",), "condition", "stopped (default), running or healthy", "COND",
                default="stopped"),
            Opt(("--timeout",), "timeout", "give up after this long (30s, 2m, 500ms)", "D",
                convert=_duration),
        ),
        details="With NAMEs, waits for each member and prints one line per member: its exit\n"
        "code for stopped (a member its policy will run again is not stopped), 0\n"
        "otherwise. Without, waits for the pod (healthy: every member with a health\n"
        "check is healthy) and prints nothing.\n" + CODES,
    ),
    Verb(
        "healthcheck",
        "Run a member's health check once: exit 0 when it passes, 1 when it fails.",
        ("ACTION", "POD", "NAME?"),
        (),
        details="usage: nspod healthcheck run POD NAME. Prints the member's health after the\n"
        "check (healthy, unhealthy, starting); the result is kept as the monitor's are.",
    ),
)
COMMANDS: dict[str, Callable[[Parsed, str], int]] = {
    "wait": cmd_wait,
    "healthcheck": cmd_healthcheck,
}
