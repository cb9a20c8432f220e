"""A pod's /etc/hosts, /etc/hostname and /etc/resolv.conf.

create writes them in ROOT/pods/NAME/etc/; every joined process gets them
bind-mounted over its /etc/... in its own private mount namespace, so the
host's files are never touched. bind_into takes the root to mount under, so
a member with its own rootfs can get them inside it.
"""

from __future__ import annotations

import os

from nspod import lean
from nspod import syscalls as sc
from nspod.errors import NspodError, os_reason

TYPE_CHECKING = False
if TYPE_CHECKING:  # join imports this module: no typing, dataclasses or pathlib at run time
    from collections.abc import Sequence

FILES = ("hosts", "hostname", "resolv.conf")
HOST_RESOLV = "/etc/resolv.conf"
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
HOST_HOSTS = "/etc/hosts"
LOCALHOST = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
"""


class EtcSpec:
    __slots__ = ("name", "hostname", "net", "ip", "dns", "add_hosts")

    def __init__(
        self,
        name: str,
        hostname: str,
        net: str,  # bridge | none | host
        ip: str | None = None,
        dns: Sequence[str] = (),
        add_hosts: Sequence[tuple[str, str]] = (),  # (name, ip)
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.net = net
        self.ip = ip
        self.dns = dns
        self.add_hosts = add_hosts



def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def parse_add_host(raw: str) -> tuple[str, str]:
    """NAME:IP for --add-host (ValueError when malformed)."""
    import ipaddress  # only create needs it; join must start fast

    name, sep, ip = raw.partition(":")
    if not sep or not name or any(c.isspace() for c in name):
        raise ValueError(f"{raw!r} is not NAME:IP")
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"{raw!r}: {ip!r} is not an IP address") from None
    return name, str(addr)


def parse_dns(raw: str) -> str:
    import ipaddress

    return str(lean.convert(raw, ipaddress.ip_address, "an IP address"))


def hosts_text(spec: EtcSpec) -> str:
    names = spec.hostname if spec.hostname == spec.name else f"{spec.hostname} {spec.name}"
    if spec.net == "host":
        try:
            text = lean.read_text(HOST_HOSTS, follow=True)
        except OSError:
            text = LOCALHOST
        text = text if text.endswith("\n") or not text else text + "\n"
    elif spec.net == "bridge" and spec.ip:
        text = f"{LOCALHOST}{spec.ip}\t{names}\n"
    else:
        text = f"{LOCALHOST}127.0.1.1\t{names}\n"
    for name, ip in spec.add_hosts:
        text += f"{ip}\t{name}\n"
    return text


def _is_loopback(server: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(server.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_text(spec: EtcSpec, host: str = HOST_RESOLV, upstream: str = RESOLVED_UPSTREAM) -> str:
    """The host's resolv.conf as a pod can use it.

    A stub resolver on 127.0.0.0/8 (systemd-resolved's 127.0.0.53) lives in
    the host's network namespace and is unreachable from a pod's own
    loopback: use resolved's upstream list instead when it exists, else
    drop the loopback servers. --dns replaces every nameserver.
    """
    try:
        lines = lean.read_text(str(host), follow=True).splitlines()
    except OSError:
        lines = []
    if spec.net != "host":
        servers = [ln.split()[1] for ln in lines if ln.split()[:1] == ["nameserver"]
                   and len(ln.split()) > 1]
        if any(_is_loopback(s) for s in servers):
            try:
                lines = lean.read_text(str(upstream), follow=True).splitlines()
            except OSError:
                lines = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"]
                                                    and _is_loopback(ln.split()[1]))]
    if spec.dns:
        lines = [ln for ln in lines if ln.split()[:1] != ["nameserver"]]
        lines += [f"nameserver {s}" for s in spec.dns]
    return "\n".join(lines) + "\n"


def write_files(etc: str | os.PathLike[str], spec: EtcSpec) -> None:
    """Writes (or rewrites, on start) the pod's files into the directory etc."""
    etc = str(etc)
    try:
        os.makedirs(etc, mode=0o755, exist_ok=True)
        _write(os.path.join(etc, "hosts"), hosts_text(spec))
        _write(os.path.join(etc, "hostname"), spec.hostname + "\n")
        _write(os.path.join(etc, "resolv.conf"), resolv_text(spec))
    except OSError as e:
        raise NspodError(f"write the pod's /etc files in {etc}: {os_reason(e)}") from e


def bind_into(etc: str | os.PathLike[str], root: str = "/") -> None:
    """Bind-mounts the pod's files over ROOT/etc/... (in the caller's mount namespace).

    Runs in a member after its unshare(CLONE_NEWNS): the pod's mounts are
    private, so nothing propagates to the host. A file missing on either side
    is skipped (an old pod, or a rootfs without /etc/hostname).
    """
    for name in FILES:
        src = os.path.join(etc, name)
        dst = os.path.join(root, "etc", name)
        if not os.path.exists(src) or not os.path.exists(dst):
            continue
        sc.mount(str(src), dst, None, sc.MS_BIND)
