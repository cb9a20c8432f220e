"""A pod's limits as the user gives them: --memory, --pids, --cpus parsed, and
Limits, what cgroups.create applies.

Lean on purpose (the verb tables' converters import it): no re at import.
"""

from __future__ import annotations

import os

from nspod.lean import convert

CFS_PERIOD_US = 100_000
MIN_MEMORY = 6 * 1024 * 1024  # podman and docker refuse less: pause and exec need some
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """`64M`, `1g`, `512k`, `1.5GiB`, `1048576` -> bytes (binary units, as podman)."""
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", text.strip(), re.I)
    if m is None:
        raise ValueError(f"{text!r} is not a size (e.g. 64M, 1g, 1048576)")
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise ValueError(f"{text!r} must be more than 0")
    return size


MAX_MEMORY = (1 << 63) - 1  # memory.max / limit_in_bytes: a signed 64-bit count of bytes
MAX_PIDS = 1 << 22  # PID_MAX_LIMIT: pids.max refuses more (kernel/cgroup/pids.c)


def parse_memory(text: str) -> int:
    size = parse_size(text)
    if size < MIN_MEMORY:
        raise ValueError(f"{text!r} is below the minimum of 6M")
    if size > MAX_MEMORY:
        raise ValueError(f"{text!r} is more than the kernel can count (8E)")
    return size


DEFAULT_PIDS = 2048  # podman's default pids limit (containers.conf pids_limit)
UNLIMITED = 0


def parse_pids(text: str) -> int:
    """`N` -> N; `0` and `-1` -> UNLIMITED (podman documents -1, containers.conf 0)."""
    n = convert(text, int, "a whole number")
    if n in (0, -1):
        return UNLIMITED
    if n < 1:
        raise ValueError(f"{text!r} must be at least 1 (0 or -1: unlimited)")
    if n > MAX_PIDS:
        raise ValueError(f"{text!r} is more than the kernel allows ({MAX_PIDS})")
    return n


def pids_limit(asked: int | None) -> int | None:
    """The pids limit a new pod gets: DEFAULT_PIDS unless asked; None is unlimited."""
    if asked is None:
        return DEFAULT_PIDS
    return None if asked == UNLIMITED else asked


def parse_cpus(text: str) -> float:
    cpus = convert(text, float, "a number of CPUs (e.g. 0.5, 2)")
    if not cpus * CFS_PERIOD_US >= 1000:  # the kernel's minimum quota is 1 ms
        raise ValueError(f"{text!r} must be at least 0.01")
    have = os.cpu_count() or 1
    if not cpus <= have:  # as docker: a quota beyond the machine is a typo (nan too)
        raise ValueError(f"{text!r} is more than the {have} CPUs of this machine")
    return cpus


class Limits:
    __slots__ = ("memory", "pids", "cpus")

    def __init__(self, memory: int | None = None, pids: int | None = None,
                 cpus: float | None = None) -> None:
        self.memory = memory  # bytes; swap is not allowed on top
        self.pids = pids
        self.cpus = cpus

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limits) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.memory, self.pids, self.cpus))

    def any(self) -> bool:
        return (self.memory, self.pids, self.cpus) != (None, None, None)

    def to_spec(self) -> dict[str, object]:
        return {"memory": self.memory, "pids": self.pids, "cpus": self.cpus}
