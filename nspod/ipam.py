"""Pod addresses: one record file per allocated address, under a lock.

    ROOT/ipam/10.88.0.5     contains the name of the pod holding 10.88.0.5
    ROOT/ipam.NET.hint      offset of the address to try next in subnet NET (a hint only)

An allocation tries the hint first and scans on only when that address is
taken, so its cost does not grow with the number of pods in the common case.
Records are created with O_EXCL, so even without the lock no address can go
to two pods; the lock keeps the hint consistent between concurrent creates.
"""

from __future__ import annotations

import os

from nspod import lean
from nspod.errors import AddressUnavailable, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # rm releases addresses: it must not pay for ipaddress or pathlib
    import ipaddress

    from nspod.store import Store

DEFAULT_SUBNET = "10.88.0.0/16"


class Subnet:
    """The pod subnet: network, gateway (its first host address), pod addresses after it."""

    __slots__ = ("net",)

    def __init__(self, net: ipaddress.IPv4Network) -> None:
        self.net = net

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Subnet) and self.net == other.net

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.net.network_address + 1

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen

    @property
    def first(self) -> int:
        """The first address a pod may get, as an int (the one after the gateway)."""
        return int(self.net.network_address) + 2

    @property
    def size(self) -> int:
        """How many addresses pods may get (network, gateway, broadcast excluded)."""
        return self.net.num_addresses - 3

    def contains(self, addr: ipaddress.IPv4Address) -> bool:
        return self.first <= int(addr) < self.first + self.size


def subnet_from_env() -> Subnet:
    raw = os.environ.get("NSPOD_SUBNET") or DEFAULT_SUBNET
    return Subnet(parse_subnet(raw, f"NSPOD_SUBNET {raw!r}"))


def parse_subnet(raw: str, label: str) -> ipaddress.IPv4Network:
    """raw as a subnet a pod network can use (/29 at the smallest); label heads the error."""
    import ipaddress

    try:
        net = ipaddress.IPv4Network(raw, strict=True)
    except ValueError as e:
        raise UsageError(f"{label}: {e}") from None
    if net.prefixlen > 29:
        raise UsageError(f"{label}: too small (at most /29)")
    return net


def parse_ip(raw: str) -> str:
    """The canonical form of an IPv4 address given by the user (ValueError when malformed)."""
    import ipaddress

    return str(lean.convert(raw, ipaddress.IPv4Address, "an IPv4 address"))


def _dir(store: Store) -> str:
    return os.path.join(store.root, "ipam")


def _claim(path: str, pod: str) -> bool:
    """Records path for pod unless another pod holds it; under the ipam lock."""
    if _holder(path) == "":  # claimed by one killed before it wrote: nobody's
        os.unlink(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, pod.encode() + b"\n")
    finally:
        os.close(fd)
    return True


def allocate(store: Store, subnet: Subnet, pod: str, want: str | None = None) -> str:
    """Records an address for pod and returns it: want, or the next free one.

    Raises AddressUnavailable (125) when want is taken or outside the subnet,
    or when the subnet is full.
    """
    import ipaddress

    d = _dir(store)
    with store.global_lock("ipam"):
        os.makedirs(d, mode=0o755, exist_ok=True)
        if want is not None:
            wanted = ipaddress.IPv4Address(want)
            if not subnet.contains(wanted):
                raise AddressUnavailable(
                    f"address {want}: outside the pod addresses of {subnet.net} "
                    f"({subnet.net.network_address + 2} to {subnet.net.broadcast_address - 1})"
                )
            if not _claim(os.path.join(d, want), pod):
                holder = _holder(os.path.join(d, want))
                raise AddressUnavailable(f"address {want}: already used by pod {holder!r}")
            return want
        hint = os.path.join(store.root, f"ipam.{subnet.net.network_address}.hint")
        start = _read_hint(hint, subnet.size)
        for i in range(subnet.size):
            off = (start + i) % subnet.size
            addr = str(ipaddress.IPv4Address(subnet.first + off))
            if _claim(os.path.join(d, addr), pod):
                with open(hint, "w") as f:
                    f.write(f"{(off + 1) % subnet.size}\n")
                return addr
    raise AddressUnavailable(f"allocate an address in {subnet.net}: no address left")



def _read_hint(path: str, size: int) -> int:
    try:
        return int(lean.read_text(path)) % size
    except (OSError, ValueError):
        return 0


def _holder(path: str) -> str:
    try:
        return lean.read_text(path).strip()
    except OSError:
        return "?"


def release(store: Store, addr: str, pod: str) -> None:
    """Frees addr if pod holds it. Idempotent."""
    path = os.path.join(_dir(store), addr)
    with store.global_lock("ipam"):
        if _holder(path) == pod:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def release_for_pod(store: Store, pod: str) -> list[str]:
    """Frees every address recorded for pod (gc: the pod record may be gone). Returns them."""
    d = _dir(store)
    freed = []
    with store.global_lock("ipam"):
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if _holder(entry.path) in (pod, ""):  # "": see _claim
                os.unlink(entry.path)
                freed.append(entry.name)
    return freed



def holders(store: Store) -> set[str]:
    """The pods address records name (gc's sweep: records whose pod directory is gone)."""
    try:
        entries = list(os.scandir(_dir(store)))
    except FileNotFoundError:
        return set()
    return {_holder(e.path) for e in entries if not e.name.startswith(".") and e.is_file()}
