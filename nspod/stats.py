"""Figures of running pods, read from their cgroups (v1 or v2)."""

from __future__ import annotations

import os

from nspod import cgroups
from nspod.errors import PodNotRunning
from nspod.gc import get, list_pods
from nspod.poddir import cgroup_dirs
from nspod.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class Usage:
    __slots__ = ("memory", "memory_limit", "cpu_ns", "pids", "pids_limit")

    def __init__(self, memory: int | None, memory_limit: int | None, cpu_ns: int | None,
                 pids: int | None, pids_limit: int | None) -> None:
        self.memory = memory  # bytes in use, page cache that can be dropped not counted
        self.memory_limit = memory_limit  # None: unlimited
        self.cpu_ns = cpu_ns  # CPU time of every process that has been in the pod
        self.pids = pids  # tasks now
        self.pids_limit = pids_limit


def _number(text: str | None) -> int | None:
    if text is None or text == "max":
        return None
    return int(text)


def usage(dirs: Sequence[str]) -> Usage | None:
    """The figures of the pod whose cgroup is dirs, or None when it has none."""
    layout = cgroups.detect()
    if layout is None or not dirs or not all(os.path.isdir(d) for d in dirs):
        return None

    def f(controller: str, name: str) -> str | None:
        assert layout is not None
        return cgroups.read_figure(layout, dirs, controller, name)

    if layout.version == 2:
        mem = _number(f("memory", "memory.current"))
        limit = _number(f("memory", "memory.max"))
        inactive = cgroups.stat_value(f("memory", "memory.stat"), "inactive_file")
        usec = cgroups.stat_value(f("cpu", "cpu.stat"), "usage_usec")
        cpu = usec * 1000 if usec is not None else None
    else:
        mem = _number(f("memory", "memory.usage_in_bytes"))
        limit = _number(f("memory", "memory.limit_in_bytes"))
        if limit is not None and limit >= cgroups.V1_UNLIMITED:
            limit = None
        inactive = cgroups.stat_value(f("memory", "memory.stat"), "total_inactive_file")
        cpu = _number(f("cpuacct", "cpuacct.usage"))
    if mem is not None and inactive is not None and inactive < mem:
        mem -= inactive  # as docker and podman show it: cache the kernel can drop is not use
    pids = _number(f("pids", "pids.current"))
    if pids is None:
        pids = len(cgroups.tree_procs(dirs[0]))  # pause and members are in its children
    return Usage(mem, limit, cpu, pids, _number(f("pids", "pids.max")))


class PodStats:
    __slots__ = ("name", "created", "usage")

    def __init__(self, name: str, created: float, usage: Usage | None) -> None:
        self.name = name
        self.created = created
        self.usage = usage  # None: the pod has no cgroup


def stats(store: Store, names: list[str]) -> list[PodStats]:
    """Figures of the named pods (every running pod when names is empty)."""
    if names:
        recs = [get(store, n) for n in names]
        for r in recs:
            if r.state != "running":
                raise PodNotRunning(f'stats pod "{r.name}": pod is not running')
    else:
        recs = [r for r in list_pods(store)[0] if r.state == "running"]
    return [PodStats(r.name, r.created, usage(cgroup_dirs(store, r, r.name)))
            for r in recs]
