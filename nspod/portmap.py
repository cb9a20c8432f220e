"""Published ports and networks' rules: one nftables table nspod owns.

    table ip NSPOD_NFT_TABLE (default "nspod")
      map ports       proto . host port            -> pod ip . pod port
      map hostports   host ip . proto . host port  -> pod ip . pod port
      set bridges, samenet, outbound, internal      one element each per network
      chain guard       drop 127.0.0.0/8 arriving from anything but lo
      chain prerouting  DNAT through the maps, to local destinations only
      chain output      the same for the host's own connections (127.0.0.1 too)
      chain postrouting masquerade DNATed flows from 127.0.0.0/8 or the pods,
                        and the networks' traffic leaving the host
      chain forward     isolation between networks; internal ones closed

A pod's ports are map elements (commented "pod NAME"), so publishing and
removing cost one element each whatever the number of pods, and rm deletes
exactly that pod's elements by key. nspod never touches another table and
never flushes the ruleset.

    ROOT/ports/tcp-8080   "POD HOST_IP": the host port is taken by POD

The records make conflict checks O(1) and say which pod holds a port. A port
as the user gives it (-p, Publish): portspec.py.
"""

from __future__ import annotations

import _socket
import errno
import os

from nspod import lean
from nspod.errors import FirewallError, NspodError, PortUnavailable, os_reason
from nspod.portspec import Publish

TYPE_CHECKING = False
if TYPE_CHECKING:  # rm unpublishes: no re, json, socket, subprocess or pathlib at import
    from typing import Any

    from nspod.store import Store

DEFAULT_TABLE = "nspod"
_TABLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def table_from_env() -> str:
    name = os.environ.get("NSPOD_NFT_TABLE") or DEFAULT_TABLE
    if not (name[:1].isalpha() and len(name) <= 63 and set(name) <= _TABLE_CHARS):
        raise NspodError(f"NSPOD_NFT_TABLE {name!r}: use letters, digits and '_'")
    return name


# -- host port records ----------------------------------------------------------


def _dir(store: Store) -> str:
    return os.path.join(store.root, "ports")


def _holder(path: str) -> tuple[str, str]:
    try:
        pod, _, ip = lean.read_text(path).strip().partition(" ")
        return pod, ip
    except OSError:
        return "?", ""


def _host_holds(p: Publish) -> str | None:
    """Why the host port is busy on the host itself, or None when it is free.

    Binding with SO_REUSEADDR fails only while a socket listens on (or, for
    UDP, is bound to) the port: TIME_WAIT leftovers do not count (socket(7)).
    """
    kind = _socket.SOCK_STREAM if p.proto == "tcp" else _socket.SOCK_DGRAM
    s = _socket.socket(_socket.AF_INET, kind)
    try:
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        s.bind((p.host_ip or "0.0.0.0", p.host_port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return "in use by a process on the host"
        if e.errno == errno.EADDRNOTAVAIL:
            return f"{p.host_ip} is not an address of this host"
        return os_reason(e)
    finally:
        s.close()
    return None


def _reserve(store: Store, pod: str, ports: list[Publish]) -> None:
    """Records every host port for pod, or none: raises PortUnavailable (125)."""
    d = _dir(store)
    os.makedirs(d, mode=0o755, exist_ok=True)
    taken: list[str] = []
    try:
        for p in ports:
            path = os.path.join(d, p.record)
            holder, _ = _holder(path)
            if holder == "":  # a killed claimer's (see release_for_pod): nobody's
                _unlink(path)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder, _ = _holder(path)
                raise PortUnavailable(
                    f"publish {p}: host port {p.host_port}/{p.proto} is already published "
                    f"by pod {holder!r}"
                ) from None
            taken.append(path)
            with os.fdopen(fd, "w") as f:
                f.write(f"{pod} {p.host_ip or ''}\n")
            why = _host_holds(p)
            if why is not None:
                raise PortUnavailable(f"publish {p}: host port {p.host_port}/{p.proto}: {why}")
    except BaseException:
        for path in taken:
            _unlink(path)
        raise


def _release_records(store: Store, pod: str, ports: list[Publish]) -> None:
    d = _dir(store)
    for p in ports:
        path = os.path.join(d, p.record)
        if _holder(path)[0] == pod:
            _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- nftables ---------------------------------------------------------------------


def nft(script: str, what: str) -> None:
    """Runs an nft script as one transaction; FirewallError(what: nft's first line)."""
    _nft(script, what)


def drop_table_if_unused(table: str) -> None:
    """Deletes the table once no network and no port is left in it (network rm)."""
    code, stdout, _ = lean.run(["nft", "-j", "list", "table", "ip", table])
    if code != 0:
        return
    for obj in lean.loads(stdout.decode()).get("nftables", []):
        s = obj.get("set") or obj.get("map")
        if s and s.get("elem"):
            return
    lean.run(["nft", "delete", "table", "ip", table])


def _nft(script: str, what: str) -> None:
    code, _, err = lean.run(["nft", "-f", "-"], script.encode())
    if code != 0:
        lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        # "/dev/stdin:1:30-60: Error: ..." then the script line and carets: the
        # message alone, without the parser's position
        said = [ln.split("Error: ", 1)[1] for ln in lines if "Error: " in ln]
        why = said[0] if said else lines[0] if lines else f"nft exited with {code}"
        raise FirewallError(f"{what}: {why.lower()}")


def table_script(table: str) -> str:
    """The table, its maps, sets and chains, asserted idempotently (nft -f, one transaction).

    Nothing in it names a network: each network is elements of the sets
    (network_elements), so its rules exist exactly while its elements do.
    The base chains are flushed and written again, so a table made by an
    older nspod, or edited by hand, ends up as this one.

      bridges   every bridge of nspod's networks
      subnets   every subnet of nspod's networks
      samenet   BRIDGE . BRIDGE: traffic inside one network
      outbound  subnets of networks masqueraded when leaving by another interface
      internal  bridges of --internal networks: nothing forwarded in or out

    Postrouting matches subnets, not input interfaces: the IPv4 postrouting
    hook has no input device (ip_output passes none), so `iifname` never
    matches there.
    """
    dnat = ("fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @hostports\n"
            "    fib daddr type local dnat ip to meta l4proto . th dport map @ports")
    chains = {
        "guard": ("type filter hook prerouting priority raw; policy accept;",
                  'iifname != "lo" ip daddr 127.0.0.0/8 drop\n'
                  '    iifname != "lo" ip saddr 127.0.0.0/8 drop'),
        "prerouting": ("type nat hook prerouting priority dstnat; policy accept;", dnat),
        "output": ("type nat hook output priority -100; policy accept;", dnat),
        # a published port reached from the host's 127.0.0.1 or from a pod
        # (its own port included) answers back through the host; traffic of a
        # network leaving by any interface but an nspod bridge goes out under
        # the host's address
        "postrouting": ("type nat hook postrouting priority srcnat; policy accept;",
                        "oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade\n"
                        "    oifname @bridges ct status dnat ip saddr @subnets masquerade\n"
                        "    ip saddr @outbound oifname != @bridges masquerade"),
        # networks are isolated from each other, published ports excepted;
        # an internal network has no path in or out
        "forward": ("type filter hook forward priority filter; policy accept;",
                    "iifname . oifname @samenet accept\n"
                    "    ct status dnat accept\n"
                    "    iifname @bridges oifname @bridges drop\n"
                    "    iifname @internal drop\n"
                    "    oifname @internal drop"),
    }
    decl = "\n".join(f"  chain {name} {{ {hook} }}" for name, (hook, _) in chains.items())
    flush = "".join(f"flush chain ip {table} {name}\n" for name in chains)
    rules = "\n".join(f"  chain {name} {{\n    {body}\n  }}" for name, (_, body) in chains.items())
    return f"""table ip {table} {{
  map ports {{
    type inet_proto . inet_service : ipv4_addr . inet_service
  }}
  map hostports {{
    type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
  }}
  set bridges {{ type ifname; }}
  set subnets {{ type ipv4_addr; flags interval; }}
  set samenet {{ type ifname . ifname; }}
  set outbound {{ type ipv4_addr; flags interval; }}
  set internal {{ type ifname; }}
{decl}
}}
{flush}table ip {table} {{
{rules}
}}
"""


def network_elements(table: str, bridge: str, subnet: str, internal: bool, verb: str) -> str:
    """The elements that wire one network (verb add), or unwire it (verb delete).

    A delete is preceded by an add of the same elements in the same
    transaction, so it succeeds whether they were there or not.
    """
    els = [("bridges", f'"{bridge}"'), ("subnets", subnet),
           ("samenet", f'"{bridge}" . "{bridge}"')]
    els.append(("internal", f'"{bridge}"') if internal else ("outbound", subnet))
    verbs = ("add",) if verb == "add" else ("add", "delete")
    return "".join(f"{v} element ip {table} {s} {{ {e} }}\n" for v in verbs for s, e in els)


def _elements(table: str, pod: str, ip: str, ports: list[Publish], verb: str) -> str:
    lines = []
    for p in ports:
        key = f"{p.proto} . {p.host_port}"
        name = "ports"
        if p.host_ip:
            key = f"{p.host_ip} . {key}"
            name = "hostports"
        if verb == "add":
            elem = f'{key} comment "pod {pod}" : {ip} . {p.pod_port}'
        else:
            elem = key
        lines.append(f"{verb} element ip {table} {name} {{ {elem} }}")
    return "\n".join(lines) + "\n"


class PortSpec:
    __slots__ = ("table", "prelude", "pod", "ip", "ports")

    def __init__(self, table: str, prelude: str, pod: str, ip: str,
                 ports: tuple[Publish, ...]) -> None:
        self.table = table
        self.prelude = prelude  # the table and the pod's network, asserted in the same transaction
        self.pod = pod
        self.ip = ip
        self.ports = ports


def publish(store: Store, spec: PortSpec) -> None:
    """Reserves the host ports and adds the pod's DNAT elements, all or nothing.

    The table and the pod's network are asserted in the same nft transaction
    (spec.prelude). The caller turns on route_localnet on the bridge
    afterwards, never before the guard chain exists.
    """
    ports = list(spec.ports)
    with store.global_lock("ports"):
        _reserve(store, spec.pod, ports)
        try:
            _nft(spec.prelude + _elements(spec.table, spec.pod, spec.ip, ports, "add"),
                 f"publish ports of pod {spec.pod!r}")
        except BaseException:
            _release_records(store, spec.pod, ports)
            raise


def unpublish(store: Store, table: str, pod: str, ports: list[Publish]) -> None:
    """Deletes the pod's DNAT elements and port records. Idempotent."""
    if not ports:
        return
    with store.global_lock("ports"):
        try:
            _nft(_elements(table, pod, "", ports, "delete"), f"unpublish ports of pod {pod!r}")
        except FirewallError:
            # Some are gone already (a half-done rm): delete the rest one by one.
            for p in ports:
                try:
                    _nft(_elements(table, pod, "", [p], "delete"), f"unpublish {p}")
                except FirewallError as e:
                    if "no such file or directory" not in str(e):
                        raise
        _release_records(store, pod, ports)


def unpublish_many(store: Store, table: str, pods: list[tuple[str, list[Publish]]]) -> None:
    """unpublish for many pods in one nft transaction (gc); per pod when that fails."""
    pods = [(pod, ports) for pod, ports in pods if ports]
    if not pods:
        return
    script = "".join(_elements(table, pod, "", ports, "delete") for pod, ports in pods)
    try:
        with store.global_lock("ports"):
            _nft(script, f"unpublish ports of {len(pods)} pods")
            for pod, ports in pods:
                _release_records(store, pod, ports)
    except FirewallError:
        for pod, ports in pods:
            unpublish(store, table, pod, ports)


def _table_elements(table: str) -> list[tuple[str, dict[str, Any]]]:
    """(map name, element) of every published port in table; none if it does not exist."""
    code, stdout, _ = lean.run(["nft", "-j", "list", "table", "ip", table])
    if code != 0:
        return []
    try:
        objs = lean.loads(stdout.decode()).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    out = []
    for obj in objs:
        m = obj.get("map") if isinstance(obj, dict) else None
        if not m or m.get("name") not in ("ports", "hostports"):
            continue
        for key, _val in m.get("elem", []):
            out.append((m["name"], key.get("elem", {})))
    return out


def published_pods(table: str) -> set[str]:
    """The pods named by the comments of table's elements (gc's sweep)."""
    return {str(e.get("comment", ""))[4:] for _, e in _table_elements(table)
            if str(e.get("comment", "")).startswith("pod ")}


def published_by(store: Store, table: str, pod: str) -> list[Publish]:
    """The ports published for pod, found from the table itself (gc: no record needed)."""
    out = []
    for map_name, elem in _table_elements(table):
        if elem.get("comment") != f"pod {pod}":
            continue
        parts = elem["val"]["concat"]
        host_ip = parts[0] if map_name == "hostports" else None
        proto, port = parts[-2], parts[-1]
        out.append(Publish(int(port), 0, str(proto), host_ip))
    return out


def release_for_pod(store: Store, table: str, pod: str) -> None:
    """gc: removes whatever rules and port records name pod."""
    found = published_by(store, table, pod)
    unpublish(store, table, pod, found)
    d = _dir(store)
    with store.global_lock("ports"):
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            return
        for entry in entries:
            # empty: claimed by a create killed before it wrote the record (the
            # claimer held this lock, so it is gone): nobody's, freed too
            if not entry.name.endswith(".lock") and _holder(entry.path)[0] in (pod, ""):
                _unlink(entry.path)


def holders(store: Store) -> set[str]:
    """The pods port records name (gc's sweep: records whose pod directory is gone)."""
    try:
        entries = list(os.scandir(_dir(store)))
    except FileNotFoundError:
        return set()
    return {_holder(e.path)[0] for e in entries if not e.name.endswith(".lock") and e.is_file()}
