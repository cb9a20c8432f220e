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
from nspod.poddir import checkpoint

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

    from nspod import ipam, network, portmap

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
    ports = [portmap.Publish.from_dict(d) for d in rec.spec.get("ports", [])]
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
    from nspod import net

    veth = net.veth_name(store.root, name, netrec["bridge"])
    info = net.setup_pod(net.PodNet(bridge=netrec["bridge"], gateway=netrec["gateway"],
                                    prefixlen=netrec["prefixlen"], ip=netrec["ip"], veth=veth,
                                    netns=netns))
    undo.callback(_quietly(net.delete_link, veth))
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

    pods: (name, its net record), or (name, None) for a pod with no usable
    record (a killed create): its address and port records are found by the
    name they contain, its rules by their comment, its veth by the name
    derived from the pod. Many pods go in batches: one nft transaction, one
    link deletion. Every part is tried even after one fails, but an address
    whose rules could not be removed is kept; the failures are raised
    together at the end.
    """
    if all(netrec == {} for _, netrec in pods):
        return  # --net none or host, or released already
    from nspod import ipam, net, portmap

    failed: list[str] = []

    def attempt(fn: Callable[..., Any], *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except NspodError as e:
            failed.append(str(e))
        except OSError as e:
            failed.append(f"{e.filename or 'release'}: {os_reason(e)}")
        return False

    by_table: dict[str, list[tuple[str, list[Any]]]] = {}
    leaving: dict[str, list[str]] = {}  # network -> its pods going: one /etc/hosts rewrite
    veths = []
    for name, netrec in pods:
        if netrec is None:
            unpublished = attempt(portmap.release_for_pod, store, portmap.table_from_env(), name)
            attempt(net.delete_link, net.veth_name(store.root, name, net.bridge_from_env()))
            if unpublished:
                attempt(ipam.release_for_pod, store, name)
            continue
        leaving.setdefault(netrec.get("network", "nspod"), []).append(name)
        ports = [portmap.Publish.from_dict(d) for d in netrec.get("ports", [])]
        if ports:
            table = netrec.get("table") or portmap.table_from_env()
            by_table.setdefault(table, []).append((name, ports))
        if netrec.get("veth"):
            veths.append(netrec["veth"])
    from nspod import nethosts

    for network, names in leaving.items():
        attempt(nethosts.leave, store, network, *names)
    keep: set[str] = set()  # an address stays while a rule may still send traffic to it
    for table, entries in by_table.items():
        if not attempt(portmap.unpublish_many, store, table, entries):
            keep.update(name for name, _ in entries)
    attempt(net.delete_links, veths)
    for name, netrec in pods:
        if netrec is not None and netrec.get("ip") and name not in keep:
            attempt(ipam.release, store, netrec["ip"], name)
    if failed:
        raise NspodError("; ".join(failed))
