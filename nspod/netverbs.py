"""The `nspod network` verbs: their table and handlers, each one call into network.py.

`network` is a verb with sub-verbs (args.Verb.sub): `nspod network create
NAME` runs the `create` of this table. Building the table imports nothing
more than args: join's start-up does not pay for it.
"""

from __future__ import annotations

from nspod import options
from nspod.args import Opt, Verb
from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nspod.args import Parsed
    from nspod.store import Store

EXIT_CODES = "exit codes: 0 success; 2 bad usage; 125 nspod failed"


def _store(root: str | None) -> Store:
    from nspod.handlers import _store as store

    return store(root)


def cmd_network(a: Parsed, root: str | None) -> int:
    raise UsageError("network: which verb? create, ls, inspect, rm or prune "
                     "(see nspod network --help)")


def cmd_create(a: Parsed, root: str | None) -> int:
    from nspod import network

    print(network.create(_store(root), a.name, a.subnet, a.internal).name)
    return 0


def cmd_ls(a: Parsed, root: str | None) -> int:
    from nspod import network, render

    store = _store(root)
    nets = [network.load(store, n) for n in network.names(store)]
    if a.quiet:
        for nw in nets:
            print(nw.name)
        return 0
    rows = [("NAME", "BRIDGE", "SUBNET", "GATEWAY", "INTERNAL", "PODS")]
    rows += [(nw.name, nw.bridge, nw.subnet, nw.gateway, "yes" if nw.internal else "no",
              str(len(network.users(store, nw.name)))) for nw in nets]
    print(render.table(rows))
    return 0


def cmd_inspect(a: Parsed, root: str | None) -> int:
    from nspod import network, render

    store = _store(root)
    print(render.to_json([network.inspect(store, network.load(store, n)) for n in a.name]))
    return 0


def cmd_rm(a: Parsed, root: str | None) -> int:
    from nspod import network, pod

    store = _store(root)
    for name in a.name:
        network.load(store, name)
        if a.force:
            for p in network.users(store, name):
                pod.remove_pod(store, p, True, a.time)
        network.remove(store, name)
        print(name)
    return 0


def cmd_prune(a: Parsed, root: str | None) -> int:
    from nspod import network

    for name in network.prune(_store(root)):
        print(name)
    return 0


SUB = (
    Verb("network create", "Create a network: a bridge, a subnet, outbound NAT.", ("NAME",), (
        Opt(("--subnet",), "subnet", "the subnet (default: the first block of the pool that "
            "overlaps no address or route of the host)", "CIDR"),
        Opt(("--internal",), "internal", "no traffic in or out of the network but to "
            "published ports"),
    ), details="Pool: $NSPOD_SUBNET_POOL (default 10.88.0.0/13:16,172.28.0.0/14:16: /16\n"
       "blocks). A --subnet that overlaps an address or a route of the host, or\n"
       "another network, is refused.\n" + EXIT_CODES, run=cmd_create),
    Verb("network ls", "List networks.", (), (
        Opt(("-q", "--quiet"), "quiet", "names only"),
    ), details=EXIT_CODES, run=cmd_ls),
    Verb("network inspect", "Show networks as JSON (subnet, bridge, pods and their addresses).",
         ("NAME...",), details=EXIT_CODES, run=cmd_inspect),
    Verb("network rm", "Remove networks: bridge, rules, records.", ("NAME...",), (
        Opt(("-f", "--force"), "force", "remove the network's pods first (rm -f)"),
        Opt(("-t", "--time"), "time", "with -f: grace period when stopping pods (default 10)",
            "SECONDS", default=10.0, convert=options.seconds),
    ), details="Refused while a pod uses the network, unless -f.\n" + EXIT_CODES, run=cmd_rm),
    Verb("network prune", "Remove every network no pod uses, but the default one.",
         details=EXIT_CODES, run=cmd_prune),
)

VERBS = (
    Verb("network", "Networks: create, ls, inspect, rm, prune (nspod network --help).",
         details="Each network is a bridge with its own subnet. Pods on one network reach\n"
         "each other by name; networks are isolated from each other; pods reach the\n"
         "outside through the host's address unless the network is --internal.\n"
         + EXIT_CODES,
         run=cmd_network, sub=SUB),
)
