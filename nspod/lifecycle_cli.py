"""Verbs of members that come back (wait, healthcheck) and join's --restart, --health-*.

Imported by cli with every verb table: it imports nothing but args and errors,
and the handlers import what they need when they run (join must start fast).
"""

from __future__ import annotations

from nspod.args import Opt, Parsed, Verb
from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CODES = "exit codes: 0 success; 2 bad usage; 125 nspod failed (no such pod, timed out, ...)"


def _restart(value: str) -> str:
    from nspod.policy import parse_restart

    return parse_restart(value)


def _duration(value: str) -> float:
    from nspod.policy import parse_duration

    return parse_duration(value)


def _log_size(value: str) -> int:
    if value.strip() in ("0", "-1", "none"):
        return 0  # unbounded, as podman's -1
    from nspod.limits import parse_size

    size = parse_size(value)
    if size < LOG_MIN_SIZE:
        raise ValueError(f"{value!r} is below the minimum of 32k (a log entry can be 16k)")
    return size


def _since(value: str) -> bytes:
    from nspod.logread import parse_since

    return parse_since(value)


def _retries(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{value!r} is not a count >= 1")
    return int(value)


JOIN_OPTS = (  # join's: verbs.py adds them to its table
    Opt(("--restart",), "restart", "with -d: no (default), on-failure[:N], always, "
        "unless-stopped", "POLICY", convert=_restart),
    Opt(("--health-cmd",), "health_cmd", "with -d: a shell command run in the member's "
        "namespaces and root; exit 0 means healthy", "CMD"),
    Opt(("--health-interval",), "health_interval", "time between checks (default 30s)", "D",
        convert=_duration),
    Opt(("--health-retries",), "health_retries", "failures in a row that make it unhealthy "
        "(default 3)", "N", convert=_retries),
    Opt(("--health-start-period",), "health_start_period", "failures this soon after the "
        "start do not count (default 0s)", "D", convert=_duration),
    Opt(("--health-timeout",), "health_timeout", "a check running longer fails (default 30s)",
        "D", convert=_duration),
    Opt(("--health-on-failure",), "health_on_failure", "when it turns unhealthy: none "
        "(default), kill, restart", "ACTION"),
    Opt(("--log-max-size",), "log_max_size", "with -d: rotate the log past this size, keeping "
        "one rotated file (default 10M; 0: unbounded)", "SIZE", convert=_log_size),
)
LOGS_OPTS = (  # logs': verbs.py adds them to its table
    Opt(("--since",), "since", "only lines since this time: a duration ago (10m), a unix "
        "time or 2006-01-02T15:04:05Z", "TIME", convert=_since),
)
LOG_MIN_SIZE = 32 << 10

JOIN_HELP = """\
--restart, --health-* and --log-max-size need -d. A member that ends is started again per its
policy, with the same spec, after a backoff (100 ms doubling to 60 s, reset
after 10 s of running); never after `nspod stop` of the pod or `nspod kill` of
the member with KILL, TERM, INT or QUIT. A per-pod monitor does it (ps shows
RESTARTS and HEALTH)."""


def join_extras(a: Parsed) -> dict[str, Any]:
    """JoinSpec keywords from the options above; usage errors when they don't fit."""
    if all(a.values[o.dest] is None for o in JOIN_OPTS):
        return {}  # the usual join: nothing more to import
    from nspod import policy

    out: dict[str, Any] = {}
    try:
        health = policy.health_spec(a.health_cmd, a.health_interval, a.health_retries,
                                    a.health_start_period, a.health_timeout,
                                    a.health_on_failure)
    except ValueError as e:
        raise UsageError(f"join: {e}") from None
    if (a.restart not in (None, "no") or health or a.log_max_size is not None) \
            and not a.detach:
        raise UsageError("join: --restart, --health-cmd and --log-max-size need -d")
    if a.log_max_size is not None:
        out["log_max_size"] = a.log_max_size
    if a.restart is not None:
        out["restart"] = a.restart
    if health:
        out["health"] = health
    return out


START_OPTS = (
    Opt(("-a", "--all"), "all", "every pod and member that should run (at boot)"),
    Opt(("--filter",), "filter", "with --all: only members of this policy (always or "
        "unless-stopped) and their pods", "restart-policy=POLICY"),
    Opt(("--ignore-running",), "ignore_running", "a pod already running is no error "
        "(systemd units)"),
)
START_HELP = """\
A stopped pod's detached members that were running when it stopped run again,
with their restart counts kept. After a reboot, a pod is made again from what
was kept under $NSPOD_STORAGE (/var/lib/nspod): `start NAME` whatever its
state; `start --all` every pod not stopped by the user, with its members of
policy always, or unless-stopped when the user did not stop them."""


def start(a: Parsed, store: Any) -> int:
    """start POD..., start --all [--filter restart-policy=P]."""
    from nspod import gc, persist, pod
    from nspod.errors import NoSuchPod

    policy = None
    if a.filter is not None:
        key, _, policy = a.filter.partition("=")
        if key != "restart-policy" or policy not in persist.AT_BOOT:
            raise UsageError(f"start: --filter {a.filter!r}: use restart-policy=always or "
                             "restart-policy=unless-stopped")
        if not a.all:
            raise UsageError("start: --filter needs --all")
    if a.all:
        if a.pod:
            raise UsageError("start: --all takes no POD")
        for name in persist.start_all(store, policy):
            print(name)
        return 0
    if not a.pod:
        raise UsageError("start: missing POD (or --all)")
    from nspod import monitor

    for name in a.pod:
        try:
            if gc.get(store, name).state == "running":
                if monitor.pending_start(store.pod_dir(name)):
                    monitor.on_start(store.pod_dir(name))  # a start cut short: finish it
                elif not a.ignore_running:
                    pod.start_pod(store, name)  # says it runs already
                print(name)
                continue
            pod.start_pod(store, name)
        except NoSuchPod:
            if not persist.restore(store, name):  # lost with the state root: a reboot
                raise
        print(name)
    return 0


def cmd_generate(a: Parsed, root: str | None) -> int:
    from nspod import systemd
    from nspod.handlers import _store

    if a.what != "systemd":
        raise UsageError(f"generate: {a.what!r}: only systemd")
    print(systemd.pod_unit(_store(root), a.pod)[1], end="")
    return 0


def cmd_wait(a: Parsed, root: str | None) -> int:
    from nspod import wait
    from nspod.handlers import state_root

    for code in wait.wait(state_root(root), a.pod, a.name, a.condition, a.timeout):
        print(code)
    return 0


def cmd_healthcheck(a: Parsed, root: str | None) -> int:
    from nspod import health, member, monitor
    from nspod.handlers import state_root
    from nspod.memberctl import find_member

    if a.action != "run":
        raise UsageError(f"healthcheck: unknown action {a.action!r} (use: run)")
    if not a.name:
        raise UsageError("healthcheck run: missing NAME")
    pod = member.Pod(state_root(root), a.pod)
    monitor.ensure_for(pod)
    code, state = health.run_once(pod, find_member(pod, a.name))
    print(state["status"])
    return 0 if code == 0 else 1


VERBS = (
    Verb(
        "generate",
        "Print a systemd unit that starts and stops a pod (generate systemd POD).",
        ("WHAT", "POD"),
        (),
        details="The unit names the pod's state root and storage root, runs `nspod start\n"
        "--ignore-running POD` (which makes the pod again after a reboot) and `nspod stop\n"
        "POD`. Save it as /etc/systemd/system/nspod-pod-POD.service and enable it.\n" + CODES,
        run=cmd_generate,
    ),
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
        run=cmd_wait,
    ),
    Verb(
        "healthcheck",
        "Run a member's health check once: exit 0 when it passes, 1 when it fails.",
        ("ACTION", "POD", "NAME?"),
        (),
        details="usage: nspod healthcheck run POD NAME. Prints the member's health after the\n"
        "check (healthy, unhealthy, starting); the result is kept as the monitor's are.\n"
        "exit codes: 0 the check passed; 1 it failed; 2 bad usage; 125 nspod failed",
        run=cmd_healthcheck,
    ),
)
