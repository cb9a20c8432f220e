"""Pod links: the bridge, a veth pair per pod, the pod's address and default route.

Messages are built and parsed with pyroute2's rtnetlink message classes
(its wire layer) and sent over plain AF_NETLINK sockets. pyroute2's IPRoute
is not used: importing it costs 200-290 ms here (the package __init__ imports
everything and its sync API starts asyncio threads), and IPRoute(netns=...)
forks a helper per namespace. The message classes alone cost ~35 ms.

One create uses two sockets and no fork: one in the host's network namespace
(bridge, veth with its peer made directly in the pod's namespace through
IFLA_NET_NS_FD) and one opened while this process is briefly setns'd into the
pod's namespace (address, route). setns(CLONE_NEWNET) is allowed in any
process, threads or not (setns(2) restricts only mnt and user namespaces),
and a netlink socket stays in the namespace it was created in.

The raw rtnetlink socket and the link deletes (no pyroute2: RTM_DELLINK by
hand) are in rtnl.py.
"""

from __future__ import annotations

import _socket as socket  # not `socket`: ~9 ms to import; rm deletes links with this module
import errno
import os

from nspod import lean
from nspod import syscalls as sc
from nspod.errors import NetError, NspodError, os_reason
from nspod.rtnl import (
    IFF_UP,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTN_UNICAST,
    RTPROT_BOOT,
    Rtnl,
    delete_link,
    link_info,
    msg_classes,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_BRIDGE = "nspod0"
IFNAMSIZ = 16


def bridge_from_env() -> str:
    name = os.environ.get("NSPOD_BRIDGE") or DEFAULT_BRIDGE
    if len(name.encode()) >= IFNAMSIZ or "/" in name or not name.strip():
        raise NetError(f"NSPOD_BRIDGE {name!r}: not a valid interface name (at most 15 bytes)")
    return name


def veth_name(root: str | os.PathLike[str], pod: str, bridge: str) -> str:
    """The host end of a pod's veth: 15 bytes, derived from root, pod and bridge.

    It starts with the bridge's first two letters, so the links of a bridge
    (nspod0 -> "nsv...", a test's "ntb..." -> "ntv...") are easy to tell apart,
    and gc can compute it from the pod's name alone.
    """
    digest = lean.sha256_hex(f"{os.fspath(root)}\0{pod}".encode())
    return f"{bridge[:2]}v{digest[:12]}"


# -- sysctls -------------------------------------------------------------------


def set_bridge_sysctl(bridge: str, key: str, value: str) -> None:
    """Sets net.ipv4.conf.BRIDGE.KEY (a per-interface sysctl, never a host-wide one)."""
    path = f"/proc/sys/net/ipv4/conf/{bridge}/{key}"
    try:
        with open(path) as f:
            current = f.read().strip()
        if current != value:
            with open(path, "w") as f:
                f.write(value + "\n")
    except OSError as e:
        raise NetError(f"sysctl net.ipv4.conf.{bridge}.{key}={value}: {os_reason(e)}") from e


def refuse_router_adverts(ifname: str) -> None:
    """net.ipv6.conf.IFNAME.accept_ra=0: a pod's router advertisement must not give
    the host an address or a route (CVE-2020-13401, CVE-2020-10749). Nothing to
    do where IPv6 is off."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/accept_ra"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        raise NetError(f"sysctl net.ipv6.conf.{ifname}.accept_ra=0: {os_reason(e)}") from e
    try:
        if os.read(fd, 16).strip() != b"0":
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, b"0\n")
    except OSError as e:
        raise NetError(f"sysctl net.ipv6.conf.{ifname}.accept_ra=0: {os_reason(e)}") from e
    finally:
        os.close(fd)


def set_hairpin(veth: str) -> None:
    """Lets the bridge send a frame back out the port it came in on, for veth.

    A pod reaching its own published port: with br_netfilter loaded
    (bridge-nf-call-iptables=1) the DNATed packet is bridged, not routed, back
    towards the port it came from, which a bridge refuses unless the port is in
    hairpin mode (bridge(8): hairpin).
    """
    path = f"/sys/class/net/{veth}/brport/hairpin_mode"
    try:
        with open(path, "w") as f:
            f.write("1\n")
    except OSError as e:
        raise NetError(f"hairpin mode on {veth}: {os_reason(e)}") from e


# -- bridge and pod links -------------------------------------------------------


class PodNet:
    """What create wires for one pod."""

    __slots__ = ("bridge", "gateway", "prefixlen", "ip", "veth", "netns")

    def __init__(self, bridge: str, gateway: str, prefixlen: int, ip: str, veth: str,
                 netns: str | os.PathLike[str]) -> None:
        self.bridge = bridge
        self.gateway = gateway
        self.prefixlen = prefixlen
        self.ip = ip
        self.veth = veth  # host end
        self.netns = os.fspath(netns)  # the pod's pinned network namespace


def _ensure_bridge(nl: Rtnl, cls: tuple[Any, Any, Any], spec: PodNet) -> int:
    """The bridge's ifindex; creates it with the gateway address when missing.

    Concurrent creates may race here: EEXIST from either step means another
    one made it first, which is fine.
    """
    ifinfmsg, ifaddrmsg, _ = cls
    info = link_info(nl, ifinfmsg, spec.bridge)
    if info is None:
        msg = ifinfmsg()
        msg["family"] = socket.AF_UNSPEC
        msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = [("IFLA_IFNAME", spec.bridge),
                        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]
        try:
            nl.call(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, f"create bridge {spec.bridge}")
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
        info = link_info(nl, ifinfmsg, spec.bridge)
        if info is None:
            raise NetError(f"bridge {spec.bridge}: vanished while being made")
    # made now or before: its gateway address is asserted each time (EEXIST: there)
    addr = ifaddrmsg()
    addr["family"] = socket.AF_INET
    addr["prefixlen"] = spec.prefixlen
    addr["index"] = info[0]
    addr["attrs"] = [("IFA_LOCAL", spec.gateway), ("IFA_ADDRESS", spec.gateway)]
    try:
        nl.call(addr, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                f"address {spec.gateway} on bridge {spec.bridge}")
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    # Packets arriving on the bridge may be routed: a pod reaching a port the
    # host publishes is DNATed back out the bridge. Per receiving interface
    # (ip-sysctl.rst: conf/interface/forwarding), so the host's other
    # interfaces keep whatever forwarding setting they had.
    set_bridge_sysctl(spec.bridge, "forwarding", "1")
    refuse_router_adverts(spec.bridge)
    return info[0]


def ensure_bridge(bridge: str, gateway: str, prefixlen: int) -> None:
    """A network's bridge, up, with its gateway address and forwarding: made or asserted."""
    cls = msg_classes()
    nl = Rtnl()
    try:
        _ensure_bridge(nl, cls, PodNet(bridge, gateway, prefixlen, "", "", ""))
    except OSError as e:
        raise NetError(f"bridge {bridge}: {os_reason(e)}") from e
    finally:
        nl.close()


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _rtnl_in(path: str) -> Rtnl:
    """An rtnetlink socket opened in the network namespace at path.

    This process enters it just long enough to open the socket, then comes
    back: a socket keeps the namespace it was made in (netns(7)), and no
    helper process is forked.
    """
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(target, sc.CLONE_NEWNET, f"enter network namespace {path}")
        try:
            return Rtnl()
        finally:
            sc.setns(home, sc.CLONE_NEWNET, "return to the host's network namespace")
    finally:
        os.close(target)
        os.close(home)


def setup_pod(spec: PodNet) -> dict[str, Any]:
    """Wires one pod: bridge (made on first use), veth, eth0 with its address, route.

    Returns what inspect shows. On failure the veth may exist: the caller
    undoes with delete_link(spec.veth).
    """
    cls = msg_classes()
    ifinfmsg, ifaddrmsg, rtmsg = cls
    step = "bridge"
    host = Rtnl()
    try:
        bridge_index = _ensure_bridge(host, cls, spec)
        step = f"veth {spec.veth}"
        nsfd = os.open(spec.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # One message: the pair, its host end up on the bridge, its peer made
            # as eth0 directly in the pod's namespace (veth(4), rtnetlink(7)).
            # The peer cannot be brought up here: veth_open fails with ENOTCONN
            # until the pair is linked, so the pod side does it below.
            peer = {"attrs": [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", nsfd)]}
            msg = ifinfmsg()
            msg["family"] = socket.AF_UNSPEC
            msg["flags"] = msg["change"] = IFF_UP
            msg["attrs"] = [
                ("IFLA_IFNAME", spec.veth),
                ("IFLA_MASTER", bridge_index),
                ("IFLA_LINKINFO", {"attrs": [
                    ("IFLA_INFO_KIND", "veth"),
                    ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]}),
                ]}),
            ]
            host.call(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, f"create veth {spec.veth}")
        finally:
            os.close(nsfd)
        refuse_router_adverts(spec.veth)
    except OSError as e:
        raise NetError(f"{step}: {os_reason(e)}") from e
    finally:
        host.close()
    try:
        return _configure_pod_side(spec, ifinfmsg, ifaddrmsg, rtmsg)
    except BaseException:
        try:
            delete_link(spec.veth)
        except (NspodError, OSError):
            pass
        raise


def _configure_pod_side(spec: PodNet, ifinfmsg: Any, ifaddrmsg: Any, rtmsg: Any) -> dict[str, Any]:
    """eth0 up with the pod's address, and the default route, inside the pod."""
    step = "enter the pod's network namespace"
    try:
        pod = _rtnl_in(spec.netns)
    except OSError as e:
        raise NetError(f"{step}: {os_reason(e)}") from e
    try:
        step = "eth0 in the pod"
        info = link_info(pod, ifinfmsg, "eth0")
        if info is None:
            raise NetError("eth0 missing in the pod's network namespace")
        index, mac = info
        up = ifinfmsg()
        up["family"] = socket.AF_UNSPEC
        up["index"] = index
        up["flags"] = up["change"] = IFF_UP
        addr = ifaddrmsg()
        addr["family"] = socket.AF_INET
        addr["prefixlen"] = spec.prefixlen
        addr["index"] = index
        addr["attrs"] = [("IFA_LOCAL", spec.ip), ("IFA_ADDRESS", spec.ip)]
        route = rtmsg()
        route["family"] = socket.AF_INET
        route["table"] = RT_TABLE_MAIN
        route["proto"] = RTPROT_BOOT
        route["scope"] = RT_SCOPE_UNIVERSE
        route["type"] = RTN_UNICAST
        route["attrs"] = [("RTA_GATEWAY", spec.gateway), ("RTA_OIF", index)]
        # Sent back to back, acknowledged in order: one round trip for three.
        sent = [
            (pod.send(up, RTM_NEWLINK, 0), "bring up eth0 in the pod"),
            (pod.send(addr, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL), f"address {spec.ip}"),
            (pod.send(route, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL),
             f"default route via {spec.gateway}"),
        ]
        for seq, what in sent:
            step = what
            pod.wait(seq, what)
    except OSError as e:
        raise NetError(f"{step}: {os_reason(e)}") from e
    finally:
        pod.close()
    return {"ip": spec.ip, "gateway": spec.gateway, "prefixlen": spec.prefixlen, "mac": mac,
            "bridge": spec.bridge, "veth": spec.veth}
