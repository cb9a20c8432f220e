"""A bridge pod's network: claimed at create and start, released by rm,
refresh and gc through one function.

A pod's network is its address (ipam) in its network's subnet (network),
its published ports (portmap: DNAT rules and port records), its veth (net)
and its line in the other members' /etc/hosts. The network itself (bridge,
rules, ip_forward) stays with its last pod: `nspod network rm` removes it.
"""

from __future__ import annotations

import contextlib

from nspod.errors import NspodError, os_reason
from nspod.lean import checkpoint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from nspod.store import PodRecord, Store


def _quietly(fn: Callable[..., Any], *args: Any) -> Callable[[], None]:
    """An undo step that never hides the error being rolled back."""

    def run() -> None:
        with contextlib.suppress(NspodError, OSError):
            fn(*args)

    return run


def claim(store: Store, rec: PodRecord, undo: contextlib.ExitStack,
          prefer: str | None = None) -> dict[str, Any]:
    """Address and host ports of a bridge pod, each with its undo.

    prefer: the address the pod had before (start after a crash), if still free.
    """
    import ipaddress

    from nspod import ipam, network, portmap, portspec

    name = rec.name
    nw = network.for_pod(store, rec.spec.get("network", network.DEFAULT))
    subnet = ipam.Subnet(ipaddress.IPv4Network(nw.subnet))
    wanted = rec.spec.get("ip")
    if wanted is None and prefer is not None:
        try:
            ip = ipam.allocate(store, subnet, name, prefer)
        except NspodError:
            ip = ipam.allocate(store, subnet, name, None)
    else:
        ip = ipam.allocate(store, subnet, name, wanted)
    undo.callback(_quietly(ipam.release, store, ip, name))
    checkpoint("address")
    table = portmap.table_from_env()
    ports = [portspec.Publish.from_dict(d) for d in rec.spec.get("ports", [])]
    # the network is asserted whole on every create: its rules with the ports, in their
    # transaction; its bridge with the veth (net.setup_pod)
    network.wire(store, nw, nft=not ports, bridge=False)
    if ports:
        portmap.publish(store, portmap.PortSpec(table=table, prelude=network.rules(nw),
                                                pod=name, ip=ip, ports=tuple(ports)))
        undo.callback(_quietly(portmap.unpublish, store, table, name, ports))
        checkpoint("ports")
    return {"network": nw.name, "ip": ip, "gateway": nw.gateway, "prefixlen": nw.prefixlen,
            "bridge": nw.bridge, "table": table, "ports": [p.to_dict() for p in ports]}


def wire(store: Store, name: str, netrec: dict[str, Any], netns: str,
         undo: contextlib.ExitStack) -> dict[str, Any]:
    """The pod's veth, into netns, with its address and routes; its undo on undo."""
    from nspod import net, rtnl

    veth = net.veth_name(store.root, name, netrec["bridge"])
    info = net.setup_pod(net.PodNet(bridge=netrec["bridge"], gateway=netrec["gateway"],
                                    prefixlen=netrec["prefixlen"], ip=netrec["ip"], veth=veth,
                                    netns=netns))
    undo.callback(_quietly(rtnl.delete_link, veth))
    if netrec["ports"]:
        # The host's 127.0.0.1 reaches published ports through this bridge only
        # (ip-sysctl.rst: route_localnet); the table's guard chain, made with the
        # first published port, drops 127.0.0.0/8 arriving on other interfaces.
        net.set_bridge_sysctl(netrec["bridge"], "route_localnet", "1")
        net.set_hairpin(veth)
    checkpoint("veth")
    return {"mac": info["mac"], "veth": veth}


def hosts_join(store: Store, rec: PodRecord, undo: contextlib.ExitStack) -> None:
    """The pod's address goes into its network's /etc/hosts files, and theirs into its."""
    from nspod import nethosts, network

    name = rec.spec.get("network", network.DEFAULT)
    names = rec.hostname if rec.hostname == rec.name else f"{rec.hostname} {rec.name}"
    nethosts.join(store, name, rec.name, rec.net["ip"], names)
    undo.callback(_quietly(nethosts.leave, store, name, rec.name))


def hosts_leave(store: Store, pod: str, netrec: dict[str, Any]) -> None:
    """The pod is down (stop): its name goes from the others' /etc/hosts."""
    from nspod import nethosts, network

    nethosts.leave(store, netrec.get("network", network.DEFAULT), pod)


def release(store: Store, pods: Sequence[tuple[str, dict[str, Any] | None]]) -> None:
    """Frees the rules, veths and addresses of pods, in that order. Idempotent.

    pods: (name, its net record), or (name, None) for a pod whose record
    cannot be trusted to name everything (a killed create or start, a damaged
    record): its address and port records are found by the name they
    contain, its rules by their comment, its veth by the name derived from
    the pod. Many pods go in batches: one nft transaction, one link deletion.
    Every part is tried even after one fails, but an address whose rules
    could not be removed is kept (no rule may send traffic to an address
    another pod may get); ReleaseFailed names each pod that still holds
    something, and what.
    """
    if all(netrec == {} for _, netrec in pods):
        return  # --net none or host, or released already
    from nspod import ipam, net, portmap, portspec, rtnl

    failed: dict[str, list[str]] = {}

    def attempt(names: Sequence[str], fn: Callable[..., Any], *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except NspodError as e:
            why = str(e)
        except OSError as e:
            why = f"{e.filename or 'release'}: {os_reason(e)}"
        for name in names:
            failed.setdefault(name, []).append(why)
        return False

    by_table: dict[str, list[tuple[str, list[Any]]]] = {}
    leaving: dict[str, list[str]] = {}  # network -> its pods going: one /etc/hosts rewrite
    veths: list[tuple[str, str]] = []
    for name, netrec in pods:
        if netrec is None:
            unpublished = attempt([name], portmap.release_for_pod, store,
                                  portmap.table_from_env(), name)
            attempt([name], rtnl.delete_link, net.veth_name(store.root, name,
                                                          net.bridge_from_env()))
            if unpublished:
                attempt([name], ipam.release_for_pod, store, name)
            continue
        leaving.setdefault(netrec.get("network", "nspod"), []).append(name)
        ports = [portspec.Publish.from_dict(d) for d in netrec.get("ports", [])]
        if ports:
            table = netrec.get("table") or portmap.table_from_env()
            by_table.setdefault(table, []).append((name, ports))
        if netrec.get("veth"):
            veths.append((name, netrec["veth"]))
    from nspod import nethosts

    for network, names in leaving.items():
        attempt(names, nethosts.leave, store, network, *names)
    rules_kept: set[str] = set()  # their address stays: a rule may still send traffic to it
    for table, entries in by_table.items():
        if not attempt([], portmap.unpublish_many, store, table, entries):
            for name, ports in entries:  # one by one: only the failing pods keep theirs
                if not attempt([name], portmap.unpublish, store, table, name, ports):
                    rules_kept.add(name)
    if not attempt([], rtnl.delete_links, [v for _, v in veths]):
        for name, veth in veths:  # one by one: only the failing pods keep their record
            attempt([name], rtnl.delete_link, veth)
    for name, netrec in pods:
        if netrec is not None and netrec.get("ip") and name not in rules_kept:
            attempt([name], ipam.release, store, netrec["ip"], name)
    if failed:
        raise ReleaseFailed(failed)


class ReleaseFailed(NspodError):
    """Some pods still hold part of their network: pods maps each to what failed."""

    def __init__(self, pods: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"pod {name!r}: {'; '.join(whys)}"
                                   for name, whys in pods.items()))
        self.pods = pods
