"""nspod's command line: parse, one call into pod, render. Only this module prints."""

from __future__ import annotations

import os
import sys

from nspod import __version__
from nspod.args import Opt, Parsed, Verb, parse, usage
from nspod.errors import USAGE, NotRoot, NspodError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~13 ms to import: join must start fast
    from collections.abc import Callable, Sequence

GLOBAL_HELP = """\
usage: nspod [--root DIR] [--debug] VERB [OPTIONS] ...

Pods on raw Linux namespaces: a pause process is PID 1 of each pod; the
commands you join share its network, IPC, UTS and PID namespaces.

verbs:
{verbs}

global options:
  --root DIR      state directory (default $NSPOD_ROOT or /run/nspod)
  --debug         show tracebacks on errors
  --version       print the version and exit
  -h, --help      show this help and exit

exit codes: 0 success; 2 bad usage; 125 nspod failed; join passes its
command's status through (see nspod join --help).
Run 'nspod VERB --help' for a verb's options and exit codes."""

EXIT_CODES = """\
exit codes: 0 success; 2 bad usage; 125 nspod failed (no such pod, not root, ...)"""
JOIN_CODES = """\
exit codes: the command's own status; 128+N when it was killed by signal N;
126 found but not executable; 127 not found; 125 nspod failed; 2 bad usage"""


def _env(value: str) -> tuple[str, str]:
    key, eq, val = value.partition("=")
    if not key:
        raise ValueError(f"{value!r} is not KEY=VALUE")
    if not eq:
        val = os.environ.get(key, "")
    return key, val


def _count(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def _signal(value: str) -> int:
    from nspod.member import parse_signal

    return parse_signal(value)
def _volume(value: str) -> object:
    from nspod.rootfs import parse_volume

    return parse_volume(value)


ROOTFS_OPTS = (
    Opt(("--rootfs",), "rootfs", "run in this root filesystem (pivot_root), with /proc, /dev, "
        "/sys; / for the host's files", "DIR"),
    Opt(("-v", "--volume"), "volume", "bind-mount a host path (ro: read-only)",
        "HOST_PATH:PATH[:ro]", True, convert=_volume),
    Opt(("--read-only",), "read_only", "mount the rootfs read-only (writable /tmp and /run)"),
)


def _publish(value: str) -> object:
    from nspod.portmap import parse_publish

    return parse_publish(value)


def _ip(value: str) -> str:
    from nspod.ipam import parse_ip

    return parse_ip(value)


def _dns(value: str) -> str:
    from nspod.etcfiles import parse_dns

    return parse_dns(value)


def _add_host(value: str) -> tuple[str, str]:
    from nspod.etcfiles import parse_add_host

    return parse_add_host(value)


def _seconds(value: str) -> float:
    try:
        secs = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if secs < 0:
        raise ValueError(f"{value!r} is negative")
    return secs


def _cap(value: str) -> str:
    from nspod.security import parse_cap

    return parse_cap(value)


def _memory(value: str) -> int:
    from nspod.cgroups import parse_memory

    return parse_memory(value)


def _pids(value: str) -> int:
    from nspod.cgroups import parse_pids

    return parse_pids(value)


def _cpus(value: str) -> float:
    from nspod.cgroups import parse_cpus

    return parse_cpus(value)


def _restart(value: str) -> str:
    from nspod.policy import parse_restart

    return parse_restart(value)


def _duration(value: str) -> float:
    from nspod.policy import parse_duration

    return parse_duration(value)


def _retries(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{value!r} is not a count >= 1")
    return int(value)


LIFECYCLE_OPTS = (  # nspod/lifecycle_cli.py gives them meaning
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
)
JOIN_LIFECYCLE_HELP = """\
--restart and --health-* need -d. A member that ends is started again per its
policy, with the same spec, after a backoff (100 ms doubling to 60 s, reset
after 10 s of running); never after `nspod stop` of the pod or `nspod kill` of
the member with KILL, TERM, INT or QUIT. A per-pod monitor does it (ps shows
RESTARTS and HEALTH)."""



SECURITY_OPTS = (
    Opt(("--cap-add",), "cap_add", "add a capability (NET_ADMIN, CAP_NET_ADMIN, ALL)", "CAP",
        True, convert=_cap),
    Opt(("--cap-drop",), "cap_drop", "drop a capability (or ALL)", "CAP", True, convert=_cap),
    Opt(("--privileged",), "privileged", "every capability, /proc unmasked, no no_new_privs"),
)
SECURITY_HELP = """\
A joined process gets the default container capabilities (CHOWN, DAC_OVERRIDE,
FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP), no_new_privs, and a /proc with kcore,
keys, timer_list, ... masked, sys, sysrq-trigger, irq, bus, fs read-only, and /sys
read-only (--privileged: none of this)."""

VERBS = {
    v.name: v
    for v in (
        Verb(
            "create",
            "Create a pod: pause as PID 1 in new PID, UTS, IPC, mount and network namespaces.",
            ("NAME?",),
            (
                Opt(("--hostname",), "hostname", "hostname inside the pod (default: the pod name)",
                    "H"),
                Opt(("--memory",), "memory", "memory limit of the pod, no swap (e.g. 64M, 1g)",
                    "SIZE",
                    convert=_memory),
                Opt(("--pids",), "pids", "most processes the pod may have at once", "N",
                    convert=_pids),
                Opt(("--cpus",), "cpus", "CPU time the pod may use, in CPUs (e.g. 0.5)", "X",
                    convert=_cpus),
                Opt(("--net",), "net", "bridge (default): own address on the bridge; none: only lo;"
                    " host: the host's network", "MODE", default="bridge"),
                Opt(("--ip",), "ip", "the pod's address (default: the next free one)", "ADDR",
                    convert=_ip),
                Opt(("-p", "--publish"), "publish", "publish a port of the pod on the host",
                    "[HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp]", True, convert=_publish),
                Opt(("--dns",), "dns", "nameserver for the pod's /etc/resolv.conf", "IP", True,
                    convert=_dns),
                Opt(("--add-host",), "add_host", "a line NAME -> IP in the pod's /etc/hosts",
                    "NAME:IP", True, convert=_add_host),
                *SECURITY_OPTS,
                *ROOTFS_OPTS,
            ),
            details="Prints the pod's name (one is generated when none is given).\n"
            "Environment: NSPOD_BRIDGE (nspod0), NSPOD_SUBNET (10.88.0.0/16),\n"
            "NSPOD_NFT_TABLE (nspod).\n"
            "--rootfs, -v, --read-only, --cap-add, --cap-drop and --privileged are\n"
            "defaults for every join into the pod.\n"
            + SECURITY_HELP + "\n" + EXIT_CODES,
        ),
        Verb(
            "join",
            "Run a command inside a pod, in the foreground.",
            ("POD",),
            (
                Opt(("-e", "--env"), "env", "set an environment variable", "KEY=VAL", True,
                    convert=_env),
                Opt(("-w", "--workdir"), "workdir", "working directory of the command", "DIR"),
                Opt(("-d", "--detach"), "detach", "run in the background; print the member's name"),
                Opt(("--name",), "name", "the member's name (unique in the pod)", "NAME"),
                Opt(("-t", "--tty"), "tty", "give the command a terminal (a pty)"),
                Opt(("-i", "--interactive"), "interactive", "with -t: pass stdin to the terminal"),
                Opt(("-u", "--user"), "user", "run as UID[:GID] or NAME[:GROUP] (names from the "
                    "member's /etc/passwd and /etc/group)", "USER"),
                *SECURITY_OPTS,
                *ROOTFS_OPTS,
                *LIFECYCLE_OPTS,
            ),
            command=True,
            details="Options may come before or after POD; CMD starts at the first word after\n"
            "POD (or after --), so CMD's own options pass through.\n"
            "In the foreground, stdin, stdout and stderr are the caller's; SIGINT,\n"
            "SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to nspod reach the command.\n"
            "With -d the command's stdin is /dev/null and its output goes to its log\n"
            "(nspod logs); pause reaps it and records its exit status (nspod ps).\n"
            "--cap-add and --cap-drop apply on top of the pod's defaults.\n"
            + JOIN_LIFECYCLE_HELP + "\n" + SECURITY_HELP + "\n" + JOIN_CODES,
        ),
        Verb(
            "ps",
            "List the members of a pod: running or ended, with their status.",
            ("POD",),
            (Opt(("--json",), "json", "print JSON"),),
            details=EXIT_CODES,
        ),
        Verb(
            "logs",
            "Print a detached member's output: its stdout to stdout, its stderr to stderr.",
            ("POD", "NAME"),
            (
                Opt(("-f", "--follow"), "follow", "keep printing until the member ends"),
                Opt(("--tail",), "tail", "only the last N lines", "N", convert=_count),
                Opt(("--timestamps",), "timestamps", "prefix each line with its time"),
            ),
            details=EXIT_CODES,
        ),
        Verb("start", "Start stopped pods again: new pause, same name and spec.", ("POD...",), (),
             details=EXIT_CODES),
        Verb(
            "restart",
            "Stop pods, then start them again.",
            ("POD...",),
            (Opt(("-t", "--time"), "time", "grace period in seconds (default 10)", "SECONDS",
                 default=10.0, convert=_seconds),),
            details=EXIT_CODES,
        ),
        Verb(
            "kill",
            "Send a signal to every process of a pod but pause, or to one member.",
            ("POD", "NAME?"),
            (Opt(("-s", "--signal"), "signal", "the signal, by name or number (default KILL)",
                 "SIGNAL", default=9, convert=_signal),),
            details=EXIT_CODES,
        ),
        Verb(
            "gc",
            "Give back everything held by pods that died or were half made.",
            (),
            (),
            details="Running pods and pods stopped by the user are untouched.\n" + EXIT_CODES,
        ),
        Verb(
            "ls",
            "List pods with their state, pause pid and age.",
            (),
            (
                Opt(("-q", "--quiet"), "quiet", "print names only"),
                Opt(("--json",), "json", "print JSON"),
            ),
            details=EXIT_CODES,
        ),
        Verb("inspect", "Print pods' details as JSON.", ("POD...",), (), details=EXIT_CODES),
        Verb(
            "stats",
            "Show pods' memory, CPU and process figures, refreshed every second.",
            ("POD*",),
            (
                Opt(("--no-stream",), "no_stream", "print once and exit"),
                Opt(("--json",), "json", "print JSON"),
            ),
            details="Without POD, every running pod. CPU % is over the last second (since the\n"
            "pod started on the first line). Ctrl-C ends it.\n" + EXIT_CODES,
        ),
        Verb(
            "stop",
            "Stop pods: TERM to every process, KILL after the grace period, pause last.",
            ("POD...",),
            (Opt(("-t", "--time"), "time", "grace period in seconds (default 10)", "SECONDS",
                 default=10.0, convert=_seconds),),
            details=EXIT_CODES,
        ),
        Verb(
            "rm",
            "Remove stopped pods; nothing of them stays.",
            ("POD...",),
            (
                Opt(("-f", "--force"), "force", "stop running pods first"),
                Opt(("-t", "--time"), "time", "grace period when stopping (default 10)", "SECONDS",
                    default=10.0, convert=_seconds),
            ),
            details=EXIT_CODES,
        ),
    )
}


def _store(root: str | None):  # type: ignore[no-untyped-def]
    from nspod.store import DEFAULT_ROOT, Store

    return Store(root or os.environ.get("NSPOD_ROOT") or DEFAULT_ROOT)


def cmd_create(a: Parsed, root: str | None) -> int:
    from nspod import pod
    from nspod.cgroups import Limits

    spec = pod.CreateSpec(
        name=a.name,
        hostname=a.hostname,
        net=a.net,
        ip=a.ip,
        ports=tuple(a.publish),
        dns=tuple(a.dns),
        add_hosts=tuple(a.add_host),
        limits=Limits(memory=a.memory, pids=a.pids, cpus=a.cpus),
        security=_security(a),
        rootfs=a.rootfs,
        volumes=tuple(a.volume),
        read_only=a.read_only,
    )
    rec = pod.create(_store(root), spec)
    print(rec.name)
    return 0


def _root(root: str | None) -> str:
    return root or os.environ.get("NSPOD_ROOT") or "/run/nspod"


def cmd_join(a: Parsed, root: str | None) -> int:
    from nspod import member

    if a.interactive and not a.tty:
        raise UsageError("join: -i needs -t (without -t, stdin is always passed)")
    if a.detach and a.tty:
        raise UsageError("join: -d and -t do not go together")
    extras = {}
    if any(a.values[o.dest] is not None for o in LIFECYCLE_OPTS):
        from nspod.lifecycle_cli import join_extras

        extras = join_extras(a)
    spec = member.JoinSpec(pod=a.pod, argv=a.command, env=dict(a.env), cwd=a.workdir,
                           detach=a.detach, name=a.name, tty=a.tty, interactive=a.interactive,
                           security=_security(a), user=a.user, rootfs=a.rootfs,
                           volumes=tuple(a.volume), read_only=a.read_only, **extras)
    name, code = member.join(_root(root), spec)
    if a.detach:
        print(name)
    return code


def cmd_ps(a: Parsed, root: str | None) -> int:
    import time

    from nspod import member

    members = member.ps(_root(root), a.pod)
    if a.json:
        print(_json(members))
        return 0
    rows = [("NAME", "PID", "POD PID", "STATE", "RESTARTS", "STARTED", "FINISHED", "COMMAND")]

    def when(t: float | None) -> str:
        return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"

    for m in members:
        state = m["state"] + (f" ({m['health']})" if m.get("health") else "")
        rows.append((m["name"], str(m["pid"]), str(m["pod_pid"]), state, str(m["restarts"]),
                     when(m["started"]), when(m["finished"]), " ".join(m["command"])))
    _table(rows)
    return 0


def cmd_logs(a: Parsed, root: str | None) -> int:
    from nspod import member

    def out(stream: str, data: bytes) -> None:
        f = sys.stderr if stream == "stderr" else sys.stdout
        f.flush()
        os.write(f.fileno(), data)

    member.logs(_root(root), a.pod, a.name, a.follow, a.tail, a.timestamps, out)
    return 0


def cmd_start(a: Parsed, root: str | None) -> int:
    from nspod import pod

    store = _store(root)
    for name in a.pod:
        pod.start_pod(store, name)
        print(name)
    return 0


def cmd_restart(a: Parsed, root: str | None) -> int:
    from nspod import pod

    store = _store(root)
    for name in a.pod:
        if pod.get(store, name).state == "running":
            pod.stop_pod(store, name, a.time)
        pod.start_pod(store, name)
        print(name)
    return 0


def cmd_kill(a: Parsed, root: str | None) -> int:
    if a.name is not None:
        from nspod import member

        member.kill_member(_root(root), a.pod, a.name, a.signal)
    else:
        from nspod import pod

        pod.kill_pod(_store(root), a.pod, a.signal)
    return 0


def cmd_gc(a: Parsed, root: str | None) -> int:
    from nspod import pod

    for name in pod.gc(_store(root)):
        print(name)
    return 0


def _json(obj: object) -> str:
    import json

    return json.dumps(obj, indent=2)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _security(a: Parsed):  # type: ignore[no-untyped-def]
    from nspod.security import SecurityOpts

    return SecurityOpts(tuple(a.cap_add), tuple(a.cap_drop), a.privileged)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n}B"


def _stats_rows(samples, previous, now):  # type: ignore[no-untyped-def]
    """JSON-ready dicts; CPU % over the time since previous (or since the pod started)."""
    import time

    rows = []
    for s in samples:
        u = s.usage
        cpu_ns = u.cpu_ns if u is not None else None
        before = previous.get(s.name)
        if cpu_ns is None:
            pct = None
        elif before is not None and now > before[0]:
            pct = (cpu_ns - before[1]) / ((now - before[0]) * 1e9) * 100
        else:
            pct = cpu_ns / max(time.time() - s.created, 1e-3) / 1e9 * 100
        rows.append({
            "name": s.name,
            "cpu_percent": None if pct is None else round(max(pct, 0.0), 2),
            "cpu_seconds": None if cpu_ns is None else round(cpu_ns / 1e9, 3),
            "memory_bytes": u.memory if u else None,
            "memory_limit_bytes": u.memory_limit if u else None,
            "pids": u.pids if u else None,
            "pids_limit": u.pids_limit if u else None,
        })
    return rows


def _stats_table(rows) -> str:  # type: ignore[no-untyped-def]
    table = [("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "CPU TIME")]
    for r in rows:
        mem, limit = r["memory_bytes"], r["memory_limit_bytes"]
        pct = f"{mem / limit * 100:.2f}%" if mem is not None and limit else "-"
        cpu = "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.2f}%"
        secs = "-" if r["cpu_seconds"] is None else f"{r['cpu_seconds']:.3f}s"
        pids = "-" if r["pids"] is None else str(r["pids"])
        if r["pids_limit"] is not None:
            pids += f" / {r['pids_limit']}"
        table.append((r["name"], cpu, f"{_size(mem)} / {_size(limit) if limit else 'unlimited'}",
                      pct, pids, secs))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)


def cmd_stats(a: Parsed, root: str | None) -> int:
    import json
    import time

    from nspod import pod

    store = _store(root)
    previous: dict[str, tuple[float, int]] = {}
    clear = sys.stdout.isatty()
    try:
        while True:
            samples = pod.stats(store, a.pod)
            now = time.monotonic()
            rows = _stats_rows(samples, previous, now)  # type: ignore[no-untyped-call]
            previous = {s.name: (now, s.usage.cpu_ns) for s in samples
                        if s.usage is not None and s.usage.cpu_ns is not None}
            text = json.dumps(rows, indent=2) if a.json else _stats_table(rows)
            if clear and not a.no_stream:
                text = "\033[H\033[J" + text
            print(text, flush=True)
            if a.no_stream:
                return 0
            time.sleep(1.0)
    except KeyboardInterrupt:
        return 0


def cmd_ls(a: Parsed, root: str | None) -> int:
    from nspod import pod

    recs = pod.list_pods(_store(root))
    if a.quiet:
        for r in recs:
            print(r.name)
    elif a.json:
        store = _store(root)
        print(pod.to_json([pod.inspect(store, r) for r in recs]))
    else:
        rows = [("NAME", "STATE", "PID", "IP", "AGE")]
        for r in recs:
            ip = str(r.net.get("ip") or "-")
            rows.append((r.name, r.state, str(r.pid if r.state == "running" else "-"), ip,
                         pod.describe_age(r)))
        _table(rows)
    return 0


def cmd_inspect(a: Parsed, root: str | None) -> int:
    from nspod import pod

    store = _store(root)
    print(pod.to_json([pod.inspect(store, pod.get(store, n)) for n in a.pod]))
    return 0


def cmd_stop(a: Parsed, root: str | None) -> int:
    from nspod import pod

    store = _store(root)
    for name in a.pod:
        pod.stop_pod(store, name, a.time)
        print(name)
    return 0


def cmd_rm(a: Parsed, root: str | None) -> int:
    from nspod import pod

    store = _store(root)
    for name in a.pod:
        pod.remove_pod(store, name, a.force, a.time)
        print(name)
    return 0


COMMANDS: dict[str, Callable[[Parsed, str | None], int]] = {
    "create": cmd_create,
    "join": cmd_join,
    "ls": cmd_ls,
    "inspect": cmd_inspect,
    "stats": cmd_stats,
    "stop": cmd_stop,
    "rm": cmd_rm,
    "ps": cmd_ps,
    "logs": cmd_logs,
    "start": cmd_start,
    "restart": cmd_restart,
    "kill": cmd_kill,
    "gc": cmd_gc,
}


LIFECYCLE_VERBS = ("wait", "healthcheck")  # in nspod/lifecycle_cli.py, imported for them only


def _lifecycle_verbs() -> dict[str, Verb]:
    from nspod import lifecycle_cli

    return {v.name: v for v in lifecycle_cli.VERBS}


def _global_help() -> str:
    verbs = "\n".join(f"  {v.name:<11} {v.summary}"
                      for v in (*VERBS.values(), *_lifecycle_verbs().values()))
    return GLOBAL_HELP.format(verbs=verbs)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = False
    root: str | None = None
    try:
        while args and args[0].startswith("-"):
            opt = args.pop(0)
            if opt == "--debug":
                debug = True
            elif opt in ("-h", "--help"):
                print(_global_help())
                return 0
            elif opt == "--version":
                print(f"nspod {__version__}")
                return 0
            elif opt == "--root" and args:
                root = args.pop(0)
            elif opt.startswith("--root="):
                root = opt[len("--root="):]
            else:
                raise UsageError(f"unknown option {opt} (see nspod --help)")
        if not args:
            print(_global_help(), file=sys.stderr)
            return USAGE
        name = args.pop(0)
        verb = VERBS.get(name)
        command = COMMANDS.get(name)
        if verb is None and name in LIFECYCLE_VERBS:
            from nspod import lifecycle_cli

            verb = _lifecycle_verbs()[name]
            command = lambda p, r: lifecycle_cli.COMMANDS[name](p, _root(r))  # noqa: E731
        if verb is None or command is None:
            raise UsageError(f"unknown verb {name!r} (see nspod --help)")
        parsed = parse(verb, args)
        if parsed.help:
            print(usage(verb))
            return 0
        if os.geteuid() != 0:
            # every verb reads or changes namespaces, mounts, cgroups or the
            # state root, which is root's (0711)
            raise NotRoot(f"{name}: must be run as root (try sudo)")
        return command(parsed, root)
    except NspodError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"nspod: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        if debug:
            raise
        what = f"{e.filename}: " if e.filename else ""
        print(f"nspod: {what}{e.strerror or e}", file=sys.stderr)
        return 125


def run() -> None:
    """The console entry point: exits without tearing the interpreter down.

    Interpreter finalization costs several ms per call; join pays it on every
    use. Output is flushed first, so nothing is lost.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":
    run()
