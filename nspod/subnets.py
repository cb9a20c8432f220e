"""Which subnets the host already uses, and the pool networks are picked from.

A bridge whose subnet overlaps an address or a route of the host breaks
both: the host sends the pods' replies (or its own traffic) to the wrong
interface, silently (podman's cni-podman0 on 10.88.0.0/16, docker's
172.17.0.0/16, a VPN's 10.0.0.0/8). So a network's subnet is checked
against every IPv4 address of the host and every route of every routing
table but `local`, read with rtnetlink dumps, before anything is made:
without --subnet the first free block of the pool is taken, as docker's
default-address-pools do; an explicit one that overlaps is refused, naming
the interface that has it.

    NSPOD_SUBNET_POOL=BASE/LEN:SIZE[,...]   default 10.88.0.0/13:16,172.28.0.0/14:16
"""

from __future__ import annotations

import _socket as socket
import ipaddress
import os
import struct

from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

# 10.88-10.95 as /16s (10.88.0.0/16 first: nspod's subnet before pools, and
# podman's; on a host where podman holds it, the next one), then 172.28-31.
DEFAULT_POOL = "10.88.0.0/13:16,172.28.0.0/14:16"

NLM_F_DUMP = 0x300
RTM_GETADDR = 22
RTM_GETROUTE = 26
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_DST = 1
RTA_OIF = 4
RTA_TABLE = 15
RT_TABLE_LOCAL = 255
ROUTE_TYPES = (1, 6, 7, 8)  # unicast, blackhole, unreachable, prohibit: all claim the range
IFADDR = struct.Struct("=BBBBI")
RTMSG = struct.Struct("=BBBBBBBBI")
NLHDR_SIZE = 16


class Used:
    """A range the host uses, and who uses it (for the error message)."""

    __slots__ = ("net", "what")

    def __init__(self, net: ipaddress.IPv4Network, what: str) -> None:
        self.net = net
        self.what = what


def parse_pool(raw: str) -> list[tuple[ipaddress.IPv4Network, int]]:
    """"BASE/LEN:SIZE,..." -> [(base network, prefix length of each block)]."""
    out = []
    for part in raw.split(","):
        base, sep, size = part.strip().partition(":")
        try:
            net = ipaddress.IPv4Network(base, strict=True)
            length = int(size) if sep else 24
        except ValueError as e:
            raise UsageError(f"NSPOD_SUBNET_POOL {raw!r}: {e}") from None
        if not net.prefixlen <= length <= 29:
            raise UsageError(f"NSPOD_SUBNET_POOL {raw!r}: block size /{length} must be between "
                             f"/{net.prefixlen} and /29")
        out.append((net, length))
    return out


def pool_from_env() -> list[tuple[ipaddress.IPv4Network, int]]:
    return parse_pool(os.environ.get("NSPOD_SUBNET_POOL") or DEFAULT_POOL)


def candidates(pool: Iterable[tuple[ipaddress.IPv4Network, int]]
               ) -> Iterator[ipaddress.IPv4Network]:
    for base, length in pool:
        yield from base.subnets(new_prefix=length)


def pick(pool: Iterable[tuple[ipaddress.IPv4Network, int]], used: list[Used]
         ) -> ipaddress.IPv4Network | None:
    """The first block of the pool that overlaps nothing in used, or None."""
    for net in candidates(pool):
        if clash(net, used) is None:
            return net
    return None


def clash(net: ipaddress.IPv4Network, used: list[Used]) -> Used | None:
    for u in used:
        if net.overlaps(u.net):
            return u
    return None


# -- what the host uses, from rtnetlink dumps --------------------------------------


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out = {}
    while off + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _dump(mtype: int, body: bytes) -> list[bytes]:
    from nspod.rtnl import Rtnl

    nl = Rtnl()
    try:
        return nl.wait(nl.send_raw(mtype, NLM_F_DUMP, body), "read the host's addresses and routes")
    finally:
        nl.close()


def host_used(skip_ifaces: Iterable[str] = ()) -> list[Used]:
    """Every IPv4 range on an interface or in a route of the host's network namespace.

    skip_ifaces: interfaces whose addresses and routes do not count (a
    network's own bridge, when its wiring is checked again).
    """
    names = {index: name for index, name in socket.if_nameindex()}
    skip = set(skip_ifaces)
    used = []
    for msg in _dump(RTM_GETADDR, IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
        family, prefixlen, _, _, index = IFADDR.unpack_from(msg, NLHDR_SIZE)
        attrs = _attrs(msg, NLHDR_SIZE + IFADDR.size, len(msg))
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        name = names.get(index, f"interface {index}")
        if family != socket.AF_INET or raw is None or name in skip:
            continue
        addr = socket.inet_ntoa(raw)
        net = ipaddress.IPv4Network(f"{addr}/{prefixlen}", strict=False)
        used.append(Used(net, f"{addr}/{prefixlen} on {name}"))
    for msg in _dump(RTM_GETROUTE, RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
        family, dst_len, _, _, table, _, _, rtype, _ = RTMSG.unpack_from(msg, NLHDR_SIZE)
        attrs = _attrs(msg, NLHDR_SIZE + RTMSG.size, len(msg))
        if RTA_TABLE in attrs:
            (table,) = struct.unpack("=I", attrs[RTA_TABLE][:4])
        if family != socket.AF_INET or dst_len == 0 or table == RT_TABLE_LOCAL \
                or rtype not in ROUTE_TYPES or RTA_DST not in attrs:
            continue
        oif = struct.unpack("=I", attrs[RTA_OIF][:4])[0] if RTA_OIF in attrs else 0
        name = names.get(oif, "") if oif else ""
        if name in skip:
            continue
        dst = ipaddress.IPv4Network(f"{socket.inet_ntoa(attrs[RTA_DST])}/{dst_len}", strict=False)
        where = f" dev {name}" if name else ""
        table_name = "" if table == 254 else f" table {table}"
        used.append(Used(dst, f"route {dst}{where}{table_name}"))
    return used
