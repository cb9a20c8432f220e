"""Networks: a bridge, a subnet, and their rules, as podman's networks are.

    ROOT/networks/NAME/network.json   the record (state "creating" until whole)
    ROOT/networks/NAME/pods/.entries  "POD IP NAMES" of each running pod on it (nethosts.py)

A network is made whole or not at all: its subnet is checked against the
host's addresses and routes first (subnets.py), then its bridge with the
gateway address, its elements in nspod's nftables table (portmap.py:
outbound masquerade unless internal, isolation from other networks) and its
hold on net.ipv4.ip_forward (forwarding.py). Every pod create asserts the
network again (bridge, sysctl, table and elements, idempotently), so a
network is fully wired whatever was there before: an older table, a bridge
deleted by hand, ip_forward turned off.

The default network, `nspod`, is made on first use: its bridge is
$NSPOD_BRIDGE (nspod0) and its subnet $NSPOD_SUBNET, or the first free block
of the pool. Other networks' bridges are nspod1, nspod2, ... (or
$NSPOD_BRIDGE-1, -2, ...).
"""

from __future__ import annotations

import os
import time

from nspod import forwarding, lean, nethosts
from nspod.errors import (
    FirewallError,
    NetworkExists,
    NetworkInUse,
    NoSuchNetwork,
    NspodError,
    UsageError,
)
from nspod.lean import check_name, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nspod.store import Store

DEFAULT = "nspod"
MODES = ("none", "host")  # --net values that are not networks; "bridge" is the default one


class Network:
    FIELDS = ("name", "bridge", "subnet", "gateway", "prefixlen", "internal", "created", "state")
    __slots__ = FIELDS

    def __init__(self, name: str, bridge: str, subnet: str, gateway: str, prefixlen: int,
                 internal: bool = False, created: float = 0.0, state: str = "ready") -> None:
        self.name = name
        self.bridge = bridge
        self.subnet = subnet
        self.gateway = gateway
        self.prefixlen = prefixlen
        self.internal = internal
        self.created = created
        self.state = state  # creating | ready

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Network:
        return cls(**{k: d[k] for k in cls.FIELDS if k in d})


def _top(store: Store) -> str:
    return os.path.join(store.root, "networks")


def _dir(store: Store, name: str) -> str:
    return os.path.join(_top(store), name)


def _lock(store: Store) -> Any:
    return store.global_lock("networks")


def names(store: Store) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(_top(store))
                      if os.path.exists(os.path.join(e.path, "network.json")))
    except FileNotFoundError:
        return []


def load(store: Store, name: str) -> Network:
    check_name(name, "network name")
    try:
        text = lean.read_text(os.path.join(_dir(store, name), "network.json"))
    except FileNotFoundError:
        raise NoSuchNetwork(f'network "{name}": no such network') from None
    return Network.from_dict(lean.loads(text))


def _save(store: Store, nw: Network) -> None:
    d = _dir(store, nw.name)
    os.makedirs(os.path.join(d, "pods"), mode=0o755, exist_ok=True)
    write_atomic(os.path.join(d, "network.json"), lean.dumps(nw.to_dict()) + "\n")


def table() -> str:
    from nspod import portmap

    return portmap.table_from_env()


def default_bridge() -> str:
    from nspod import net

    return net.bridge_from_env()


def _new_bridge(store: Store) -> str:
    """nspod1, nspod2, ... (or $NSPOD_BRIDGE-1, ...): the first no record or link has."""
    from nspod import net

    env = os.environ.get("NSPOD_BRIDGE")
    taken = {load(store, n).bridge for n in names(store)}
    for i in range(1, 10000):
        name = f"{env[:net.IFNAMSIZ - 6]}-{i}" if env else f"nspod{i}"
        if name not in taken and not net.link_exists(name):
            return name
    raise NspodError("no free bridge name")


# -- create -----------------------------------------------------------------------


def create(store: Store, name: str, subnet: str | None = None, internal: bool = False) -> Network:
    """Makes network name whole, or raises with nothing made."""
    check_name(name, "network name")
    if name in MODES or name == "bridge":
        raise UsageError(f'network create "{name}": the name is reserved for --net {name}')
    store.ensure()
    with _lock(store):
        return _create_locked(store, name, subnet, internal)


def _create_locked(store: Store, name: str, subnet: str | None, internal: bool) -> Network:
    import contextlib
    import ipaddress

    from nspod import ipam, subnets

    if os.path.exists(os.path.join(_dir(store, name), "network.json")):
        raise NetworkExists(f'network create "{name}": network already exists')
    bridge = default_bridge() if name == DEFAULT else _new_bridge(store)
    what = f'network create "{name}"'
    # the bridge's own addresses do not count: it is this network's (made before by this root)
    used = subnets.host_used(skip_ifaces=[bridge])
    for other in names(store):
        nw = load(store, other)
        used.append(subnets.Used(ipaddress.IPv4Network(nw.subnet),
                                 f"network {other} ({nw.bridge})"))
    if subnet is not None:
        wanted = ipam.parse_subnet(subnet, f"{what}: --subnet {subnet!r}")
        hit = subnets.clash(wanted, used)
        if hit is not None:
            raise NspodError(f"{what}: subnet {wanted} overlaps {hit.what}")
    else:
        picked = subnets.pick(subnets.pool_from_env(), used)
        if picked is None:
            raise NspodError(f"{what}: no free subnet left in the pool "
                             f"({os.environ.get('NSPOD_SUBNET_POOL') or subnets.DEFAULT_POOL})")
        wanted = picked
    nw = Network(name=name, bridge=bridge, subnet=str(wanted),
                 gateway=str(wanted.network_address + 1), prefixlen=wanted.prefixlen,
                 internal=internal, created=time.time(), state="creating")
    with contextlib.ExitStack() as undo:
        undo.callback(_remove_dir, _dir(store, name))
        _save(store, nw)
        _checkpoint("network-record")
        undo.callback(_unwire_quietly, store, nw)
        wire(store, nw)
        _checkpoint("network-wire")
        nw.state = "ready"
        _save(store, nw)
        undo.pop_all()
    return nw


def _checkpoint(step: str) -> None:
    """NSPOD_FAIL_AT / NSPOD_KILL_AT, as pod.checkpoint (pod is a layer above)."""
    if os.environ.get("NSPOD_FAIL_AT") == step:
        raise NspodError(f"injected failure at {step}")
    if os.environ.get("NSPOD_KILL_AT") == step:
        os.kill(os.getpid(), 9)


def rules(nw: Network) -> str:
    """The nft script that asserts the table and this network's elements."""
    from nspod import portmap

    t = table()
    return portmap.table_script(t) + portmap.network_elements(t, nw.bridge, nw.subnet,
                                                               nw.internal, "add")


def wire(store: Store, nw: Network, nft: bool = True, bridge: bool = True) -> None:
    """Bridge, its sysctl, the table's elements and ip_forward: asserted, idempotent.

    nft=False: the caller sends rules(nw) itself, in a transaction of its own
    (a create that publishes ports adds them in the same one). bridge=False:
    the caller asserts the bridge itself (a pod create, as it makes its veth).
    """
    from nspod import net, portmap

    if bridge:
        net.ensure_bridge(nw.bridge, nw.gateway, nw.prefixlen)
    if nft:
        portmap.nft(rules(nw), f'wire network "{nw.name}"')
    if not forwarding.is_on() or nw.name not in forwarding.held_by(store.root):
        forwarding.hold(store.root, nw.name)


def for_pod(store: Store, want: str) -> Network:
    """The network a bridge pod joins (want: a name, or "bridge" for the default).

    The default network is made on first use; $NSPOD_SUBNET, when set, is its
    subnet.
    """
    name = DEFAULT if want == "bridge" else want
    try:
        nw = load(store, name)
    except NoSuchNetwork:
        if name != DEFAULT:
            raise NoSuchNetwork(f'network "{name}": no such network '
                                f"(nspod network create {name})") from None
        store.ensure()
        with _lock(store):
            try:
                nw = load(store, name)
            except NoSuchNetwork:
                return _create_locked(store, name, os.environ.get("NSPOD_SUBNET") or None, False)
    if nw.state != "ready":  # being made: wait for its create, which holds the lock
        with _lock(store):
            nw = load(store, name)
            if nw.state != "ready":  # its create was killed
                if name != DEFAULT:
                    raise NspodError(f'network "{name}": half made (nspod gc removes it)')
                unwire(store, nw)
                _remove_dir(_dir(store, name))
                return _create_locked(store, name, os.environ.get("NSPOD_SUBNET") or None, False)
    return nw


# -- rm, prune, gc ----------------------------------------------------------------


def users(store: Store, name: str) -> list[str]:
    """Pods whose record puts them on network name, whatever their state."""
    from nspod.errors import NoSuchPod

    out = []
    for pod in store.names():
        try:
            rec = store.load(pod)
        except (NoSuchPod, ValueError, OSError):
            continue
        if rec.spec.get("net") == "bridge" and rec.spec.get("network", DEFAULT) == name:
            out.append(pod)
    return out


def remove(store: Store, name: str) -> None:
    """Unwires and forgets network name; refused while a pod uses it."""
    with _lock(store):
        nw = load(store, name)
        held = users(store, name)
        if held:
            raise NetworkInUse(f'network rm "{name}": used by pod{"s" if len(held) > 1 else ""} '
                               f"{', '.join(held)} (rm -f removes them first)")
        unwire(store, nw)
        _remove_dir(_dir(store, name))


def prune(store: Store) -> list[str]:
    """Removes every network no pod uses but the default one; returns their names."""
    removed = []
    for name in names(store):
        if name == DEFAULT:
            continue
        try:
            remove(store, name)
            removed.append(name)
        except (NetworkInUse, NoSuchNetwork):
            continue
    return removed


def unwire(store: Store, nw: Network) -> None:
    """Elements, bridge, ip_forward hold of nw: gone. Idempotent."""
    from nspod import portmap, rtnl

    t = table()
    try:
        portmap.nft(portmap.network_elements(t, nw.bridge, nw.subnet, nw.internal, "delete"),
                    f'unwire network "{nw.name}"')
    except FirewallError as e:
        if "no such file or directory" not in str(e):
            raise
    portmap.drop_table_if_unused(t)
    rtnl.delete_link(nw.bridge)
    forwarding.release(store.root, nw.name)


def _unwire_quietly(store: Store, nw: Network) -> None:
    try:
        unwire(store, nw)
    except (NspodError, OSError):
        pass


def gc(store: Store) -> list[str]:
    """Removes networks a killed create left half made, and stale ip_forward holds."""
    removed = []
    with _lock(store):  # a create in progress holds it
        for name in names(store):
            try:
                nw = load(store, name)
            except (NspodError, ValueError, OSError):
                continue
            if nw.state != "ready":
                unwire(store, nw)
                _remove_dir(_dir(store, name))
                removed.append(name)
        # holds without a network: a create killed between hold and record, or
        # a state root removed by hand
        forwarding.release_stale()
        nethosts.gc(store, names(store))
    return removed


def _remove_dir(top: str) -> None:
    """The network's directory: its record and its pods/ entries."""
    for sub in (os.path.join(top, "pods"), top):
        try:
            for e in os.scandir(sub):
                if not e.is_dir(follow_symlinks=False):
                    os.unlink(e.path)
            os.rmdir(sub)
        except FileNotFoundError:
            continue


def inspect(store: Store, nw: Network) -> dict[str, Any]:
    return {**nw.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                     time.gmtime(nw.created)),
            "default": nw.name == DEFAULT, "table": table(),
            "pods": nethosts.members(store, nw.name)}
