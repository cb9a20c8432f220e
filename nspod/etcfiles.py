"""A pod's /etc/hosts, /etc/hostname and /etc/resolv.conf.

create writes them in ROOT/pods/NAME/etc/; every joined process gets them
bind-mounted over its /etc/... in its own private mount namespace, so the
host's files are never touched. bind_into takes the root to mount under, so
a member with its own rootfs can get them inside it.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nspod import syscalls as sc
from nspod.errors import NspodError, os_reason

FILES = ("hosts", "hostname", "resolv.conf")
HOST_RESOLV = Path("/etc/resolv.conf")
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")
LOCALHOST = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
"""


@dataclass(frozen=True)
class EtcSpec:
    name: str
    hostname: str
    net: str  # bridge | none | host
    ip: str | None = None
    dns: Sequence[str] = ()
    add_hosts: Sequence[tuple[str, str]] = ()  # (name, ip)


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

    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ValueError(f"{raw!r} is not an IP address") from None


def hosts_text(spec: EtcSpec) -> str:
    names = spec.hostname if spec.hostname == spec.name else f"{spec.hostname} {spec.name}"
    if spec.net == "host":
        try:
            text = HOST_HOSTS.read_text()
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


def resolv_text(spec: EtcSpec, host: Path = HOST_RESOLV, upstream: Path = RESOLVED_UPSTREAM) -> str:
    """The host's resolv.conf as a pod can use it.

    A stub resolver on 127.0.0.0/8 (systemd-resolved's 127.0.0.53) lives in
    the host's network namespace and is unreachable from a pod's own
    loopback: use resolved's upstream list instead when it exists, else
    drop the loopback servers. --dns replaces every nameserver.
    """
    try:
        lines = host.read_text().splitlines()
    except OSError:
        lines = []
    if spec.net != "host":
        servers = [ln.split()[1] for ln in lines if ln.split()[:1] == ["nameserver"]
                   and len(ln.split()) > 1]
        if any(_is_loopback(s) for s in servers):
            try:
                lines = upstream.read_text().splitlines()
            except OSError:
                lines = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"]
                                                    and _is_loopback(ln.split()[1]))]
    if spec.dns:
        lines = [ln for ln in lines if ln.split()[:1] != ["nameserver"]]
        lines += [f"nameserver {s}" for s in spec.dns]
    return "\n".join(lines) + "\n"


def write_files(etc: Path, spec: EtcSpec) -> None:
    """Writes the pod's files into etc (a new directory)."""
    try:
        etc.mkdir(mode=0o755)
        (etc / "hosts").write_text(hosts_text(spec))
        (etc / "hostname").write_text(spec.hostname + "\n")
        (etc / "resolv.conf").write_text(resolv_text(spec))
    except OSError as e:
        raise NspodError(f"write the pod's /etc files in {etc}: {os_reason(e)}") from e


def bind_into(etc: Path, root: str = "/") -> None:
    """Bind-mounts the pod's files over ROOT/etc/... (in the caller's mount namespace).

    Runs in a member after its unshare(CLONE_NEWNS): the pod's mounts are
    private, so nothing propagates to the host. A file missing on either side
    is skipped (an old pod, or a rootfs without /etc/hostname).
    """
    for name in FILES:
        src = etc / name
        dst = os.path.join(root, "etc", name)
        if not src.exists() or not os.path.exists(dst):
            continue
        sc.mount(str(src), dst, None, sc.MS_BIND)
