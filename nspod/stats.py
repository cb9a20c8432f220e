"""Figures of running pods, read from their cgroups."""

from __future__ import annotations

from nspod import cgroups
from nspod.errors import PodNotRunning
from nspod.gc import get, list_pods
from nspod.poddir import cgroup_dirs
from nspod.store import Store


class PodStats:
    __slots__ = ("name", "created", "usage")

    def __init__(self, name: str, created: float, usage: cgroups.Usage | None) -> None:
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
        recs = [r for r in list_pods(store) if r.state == "running"]
    return [PodStats(r.name, r.created, cgroups.usage(cgroup_dirs(store, r, r.name)))
            for r in recs]
