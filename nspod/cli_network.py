"""`nspod network VERB`: its own verb table, each verb one call into network.py."""

from __future__ import annotations

import os
import sys

from nspod.args import Opt, Parsed, Verb, parse, usage
from nspod.errors import USAGE, NotRoot, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_CODES = "exit codes: 0 success; 2 bad usage; 125 nspod failed"

VERBS = {
    v.name.split()[1]: v
    for v in (
        Verb("network create", "Create a network: a bridge, a subnet, outbound NAT.", ("NAME",), (
            Opt(("--subnet",), "subnet", "the subnet (default: the first block of the pool "
                "that overlaps no address or route of the host)", "CIDR"),
            Opt(("--internal",), "internal", "no traffic in or out of the network but to "
                "published ports"),
        ), details="Pool: $NSPOD_SUBNET_POOL (10.88.0.0/13:16,172.28.0.0/14:16: /16 blocks).\n"
           "A --subnet that overlaps an address or a route of the host is refused.\n"
           + EXIT_CODES),
        Verb("network ls", "List networks.", (), (
            Opt(("-q", "--quiet"), "quiet", "names only"),
        ), details=EXIT_CODES),
        Verb("network inspect", "Show networks as JSON.", ("NAME...",), details=EXIT_CODES),
        Verb("network rm", "Remove networks: bridge, rules, records.", ("NAME...",), (
            Opt(("-f", "--force"), "force", "remove the network's pods first"),
        ), details="Refused while a pod uses the network (without -f).\n" + EXIT_CODES),
        Verb("network prune", "Remove every network no pod uses (not the default one).",
             details=EXIT_CODES),
    )
}

HELP = """\
usage: nspod network VERB [OPTIONS] ...

Networks: each a bridge with its own subnet. Pods on one network reach each
other by name; networks are isolated from each other; pods reach the outside
through the host's address unless the network is --internal.

verbs:
{verbs}

Run 'nspod network VERB --help' for a verb's options."""


def _store(root: str | None):  # type: ignore[no-untyped-def]
    from nspod.store import DEFAULT_ROOT, Store

    return Store(root or os.environ.get("NSPOD_ROOT") or DEFAULT_ROOT)


def cmd_create(a: Parsed, root: str | None) -> int:
    from nspod import network

    print(network.create(_store(root), a.name, a.subnet, a.internal).name)
    return 0


def cmd_ls(a: Parsed, root: str | None) -> int:
    from nspod import network

    store = _store(root)
    nets = [network.load(store, n) for n in network.names(store)]
    if a.quiet:
        for nw in nets:
            print(nw.name)
        return 0
    rows = [("NAME", "BRIDGE", "SUBNET", "GATEWAY", "INTERNAL", "PODS")]
    for nw in nets:
        rows.append((nw.name, nw.bridge, nw.subnet, nw.gateway, "yes" if nw.internal else "no",
                     str(len(network.users(store, nw.name)))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_inspect(a: Parsed, root: str | None) -> int:
    import json

    from nspod import network

    store = _store(root)
    print(json.dumps([network.inspect(store, network.load(store, n)) for n in a.name], indent=2))
    return 0


def cmd_rm(a: Parsed, root: str | None) -> int:
    from nspod import network, pod

    store = _store(root)
    for name in a.name:
        network.load(store, name)
        if a.force:
            for p in network.users(store, name):
                pod.remove_pod(store, p, True, 10.0)
        network.remove(store, name)
        print(name)
    return 0


def cmd_prune(a: Parsed, root: str | None) -> int:
    from nspod import network

    for name in network.prune(_store(root)):
        print(name)
    return 0


COMMANDS: dict[str, Callable[[Parsed, str | None], int]] = {
    "create": cmd_create, "ls": cmd_ls, "inspect": cmd_inspect, "rm": cmd_rm, "prune": cmd_prune,
}


def main(args: list[str], root: str | None) -> int:
    """nspod network ARGS; errors go up to cli.main, which prints them."""
    if not args or args[0] in ("-h", "--help"):
        verbs = "\n".join(f"  {k:<10} {v.summary}" for k, v in VERBS.items())
        print(HELP.format(verbs=verbs), file=sys.stdout if args else sys.stderr)
        return 0 if args else USAGE
    name = args.pop(0)
    verb = VERBS.get(name)
    if verb is None:
        raise UsageError(f"network: unknown verb {name!r} (see nspod network --help)")
    parsed = parse(verb, args)
    if parsed.help:
        print(usage(verb))
        return 0
    if os.geteuid() != 0:
        raise NotRoot(f"network {name}: must be run as root (try sudo)")
    return COMMANDS[name](parsed, root)
