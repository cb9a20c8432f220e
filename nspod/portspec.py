"""A published port as the user gives it: [HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp]
parsed into a Publish, and its form in the pod's record.

Lean: rm reads a pod's ports with it (no re at import).
"""

from __future__ import annotations

import _socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROTOS = ("tcp", "udp")
PUBLISH_PATTERN = (
    r"(?:(?P<host_ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?P<host_port>\d+):(?P<pod_port>\d+)"
    r"(?:/(?P<proto>[a-z]+))?"
)


class Publish:
    __slots__ = ("host_port", "pod_port", "proto", "host_ip")

    def __init__(self, host_port: int, pod_port: int, proto: str = "tcp",
                 host_ip: str | None = None) -> None:
        self.host_port = host_port
        self.pod_port = pod_port
        self.proto = proto
        self.host_ip = host_ip  # None: every address of the host

    def _key(self) -> tuple[int, int, str, str | None]:
        return (self.host_port, self.pod_port, self.proto, self.host_ip)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Publish) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Publish{self._key()!r}"

    def __str__(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{self.host_port}:{self.pod_port}/{self.proto}"

    def to_dict(self) -> dict[str, Any]:
        return {"host_ip": self.host_ip or "", "host_port": self.host_port,
                "pod_port": self.pod_port, "proto": self.proto}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Publish:
        return cls(int(d["host_port"]), int(d["pod_port"]), str(d["proto"]),
                   d.get("host_ip") or None)

    @property
    def record(self) -> str:
        return f"{self.proto}-{self.host_port}"


def parse_publish(raw: str) -> Publish:
    """[HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp] -> Publish; ValueError names what is wrong."""
    import re

    m = re.fullmatch(PUBLISH_PATTERN, raw)
    if m is None:
        raise ValueError(f"{raw!r} is not [HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp]")
    proto = m["proto"] or "tcp"
    if proto not in PROTOS:
        raise ValueError(f"{raw!r}: protocol {proto!r} is not tcp or udp")
    ports = []
    for key in ("host_port", "pod_port"):
        port = int(m[key])
        if not 1 <= port <= 65535:
            raise ValueError(f"{raw!r}: port {m[key]} is outside 1-65535")
        ports.append(port)
    host_ip = m["host_ip"]
    if host_ip is not None:
        try:
            _socket.inet_pton(_socket.AF_INET, host_ip)
        except OSError:
            raise ValueError(f"{raw!r}: {host_ip!r} is not an IPv4 address") from None
        host_ip = ".".join(str(int(x)) for x in host_ip.split("."))
        if host_ip == "0.0.0.0":
            host_ip = None
    return Publish(ports[0], ports[1], proto, host_ip)
