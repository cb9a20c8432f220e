"""Raw rtnetlink: a socket in the current network namespace, pyroute2's message
classes loaded without its package __init__ (net.py says why), and link lookups
and deletes built by hand (no pyroute2 at all: rm and gc delete links with them).
"""

from __future__ import annotations

import _socket as socket  # not `socket`: ~9 ms to import
import errno
import os
import struct

from nspod.errors import NetError, os_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
IFF_UP = 0x1
IFLA_IFNAME = 3
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
NLHDR = struct.Struct("=IHHII")
IFINFO = struct.Struct("=BxHiII")


def msg_classes() -> tuple[Any, Any, Any]:
    """pyroute2's ifinfmsg, ifaddrmsg, rtmsg, without running pyroute2/__init__.

    The package __init__ imports IPRoute, NDB, asyncio and more (~250 ms); the
    message modules need none of it. When pyroute2 is already imported, use it.
    """
    import importlib.util
    import sys
    import types

    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or not spec.submodule_search_locations:
            raise NetError("pyroute2 is not installed (run make setup)")
        pkg = types.ModuleType("pyroute2")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["pyroute2"] = pkg
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    return ifinfmsg, ifaddrmsg, rtmsg


class Rtnl:
    """An rtnetlink socket in the network namespace current when it was opened."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, msg: Any, mtype: int, flags: int) -> int:
        self.seq += 1
        msg["header"]["type"] = mtype
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        return self.seq

    def send_raw(self, mtype: int, flags: int, payload: bytes) -> int:
        self.seq += 1
        hdr = NLHDR.pack(NLHDR.size + len(payload), mtype, NLM_F_REQUEST | NLM_F_ACK | flags,
                         self.seq, 0)
        self.sock.send(hdr + payload)
        return self.seq

    def wait(self, seq: int, what: str) -> list[bytes]:
        """Replies to request seq up to its ack; raises OSError(what) on an error ack."""
        out: list[bytes] = []
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + NLHDR.size <= len(data):
                length, mtype, _, rseq, _ = NLHDR.unpack_from(data, off)
                if length < NLHDR.size:
                    raise NetError(f"{what}: malformed netlink reply")
                if rseq == seq:
                    if mtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, off + NLHDR.size)
                        if err:
                            raise OSError(-err, os.strerror(-err), what)
                        return out
                    if mtype == NLMSG_DONE:
                        return out
                    out.append(data[off : off + length])
                off += (length + 3) & ~3

    def call(self, msg: Any, mtype: int, flags: int, what: str) -> list[bytes]:
        return self.wait(self.send(msg, mtype, flags), what)


def ifinfo_raw(index: int, name: str | None = None) -> bytes:
    """An ifinfomsg, with IFLA_IFNAME when name is given (for lookups and deletes)."""
    body = IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    if name is not None:
        raw = name.encode() + b"\0"
        nla = struct.pack("=HH", 4 + len(raw), IFLA_IFNAME) + raw
        body += nla + b"\0" * (-len(nla) % 4)
    return body


def delete_link(name: str) -> bool:
    """Deletes link name in the current network namespace; False when there is none.

    Deleting either end of a veth deletes both (veth(4)).
    """
    nl = Rtnl()
    try:
        nl.wait(nl.send_raw(RTM_DELLINK, 0, ifinfo_raw(0, name)), f"delete link {name}")
        return True
    except OSError as e:
        if e.errno == errno.ENODEV:
            return False
        raise NetError(f"delete link {name}: {os_reason(e)}") from e
    finally:
        nl.close()


IFLA_GROUP = 27


def delete_links(names: list[str]) -> None:
    """Deletes many links at once: one unregister, one RCU wait, for all of them.

    Deleting links one by one costs the kernel ~15-30 ms each (a synchronize
    per unregister); moved into one fresh link group first, they go in one
    RTM_DELLINK by group (rtnetlink(7), ip-link(8) `delete group`). The group
    is random and fresh per call, so no other link is in it.
    """
    if len(names) < 2:
        for name in names:
            delete_link(name)
        return
    group = 0x40000000 | int.from_bytes(os.urandom(4), "little") & 0x3FFFFFFF
    nl = Rtnl()
    try:
        moved = 0
        for name in names:
            attr = struct.pack("=HHI", 8, IFLA_GROUP, group)
            try:
                nl.wait(nl.send_raw(RTM_NEWLINK, 0, ifinfo_raw(0, name) + attr),
                        f"link {name} to group {group}")
                moved += 1
            except OSError as e:
                if e.errno != errno.ENODEV:
                    raise NetError(f"delete link {name}: {os_reason(e)}") from e
        if moved:
            attr = struct.pack("=HHI", 8, IFLA_GROUP, group)
            nl.wait(nl.send_raw(RTM_DELLINK, 0, ifinfo_raw(0) + attr),
                    f"delete link group {group}")
    except OSError as e:
        raise NetError(f"delete links: {os_reason(e)}") from e
    finally:
        nl.close()


def link_info(nl: Rtnl, ifinfmsg: Any, name: str) -> tuple[int, str] | None:
    """(ifindex, mac) of link name, None when it does not exist."""
    try:
        replies = nl.wait(nl.send_raw(RTM_GETLINK, 0, ifinfo_raw(0, name)), f"link {name}")
    except OSError as e:
        if e.errno == errno.ENODEV:
            return None
        raise
    msg = ifinfmsg(replies[0])
    msg.decode()
    return msg["index"], msg.get_attr("IFLA_ADDRESS") or ""
