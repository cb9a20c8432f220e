"""nspod's command line: parse, one call into pod, render. Only this module prints."""

import os
import sys
from collections.abc import Callable

from nspod import __version__
from nspod.args import Opt, Parsed, Verb, parse, usage
from nspod.errors import USAGE, NspodError, UsageError

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


VERBS = {
    v.name: v
    for v in (
        Verb(
            "create",
            "Create a pod: pause as PID 1 in new PID, UTS, IPC, mount and network namespaces.",
            ("NAME?",),
            (
                Opt(("--hostname",), "hostname", "hostname inside the pod (default: the pod name)", "H"),
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
            ),
            details="Prints the pod's name (one is generated when none is given).\n"
            "Environment: NSPOD_BRIDGE (nspod0), NSPOD_SUBNET (10.88.0.0/16),\n"
            "NSPOD_NFT_TABLE (nspod).\n" + EXIT_CODES,
        ),
        Verb(
            "join",
            "Run a command inside a pod, in the foreground.",
            ("POD",),
            (
                Opt(("-e", "--env"), "env", "set an environment variable", "KEY=VAL", True, convert=_env),
                Opt(("-w", "--workdir"), "workdir", "working directory of the command", "DIR"),
            ),
            command=True,
            details="Stdin, stdout and stderr are the caller's; SIGINT, SIGTERM, SIGHUP,\n"
            "SIGQUIT, SIGUSR1 and SIGUSR2 sent to nspod reach the command.\n" + JOIN_CODES,
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

    spec = pod.CreateSpec(name=a.name, hostname=a.hostname, net=a.net, ip=a.ip,
                          ports=tuple(a.publish), dns=tuple(a.dns), add_hosts=tuple(a.add_host))
    rec = pod.create(_store(root), spec)
    print(rec.name)
    return 0


def cmd_join(a: Parsed, root: str | None) -> int:
    from nspod import pod

    spec = pod.JoinSpec(pod=a.pod, argv=a.command, env=dict(a.env), cwd=a.workdir)
    return pod.join(_store(root), spec)


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
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
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
    "stop": cmd_stop,
    "rm": cmd_rm,
}


def _global_help() -> str:
    return GLOBAL_HELP.format(verbs="\n".join(f"  {v.name:<10} {v.summary}" for v in VERBS.values()))


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
        if verb is None:
            raise UsageError(f"unknown verb {name!r} (see nspod --help)")
        parsed = parse(verb, args)
        if parsed.help:
            print(usage(verb))
            return 0
        return COMMANDS[name](parsed, root)
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


if __name__ == "__main__":
    sys.exit(main())
