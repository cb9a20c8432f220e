"""One cgroup per pod: limits (memory, pids, cpu) and the figures of `nspod stats`.
The limits as the user gives them (parsing, Limits): limits.py.

Both layouts, detected from /proc/self/mountinfo (no cgroup library):

  v2 (unified)   <mount>/nspod/<key>-<pod>, the controllers enabled through
                 <mount>/nspod/cgroup.subtree_control (cgroups(7): a cgroup
                 with processes cannot hand controllers down, so "nspod"
                 itself holds none).
  v1 (hybrid or legacy)
                 <mount of C>/nspod/<key>-<pod> for each controller C of
                 memory, pids, cpu and cpuacct (one directory per hierarchy:
                 cpu and cpuacct are often mounted together).

<key> is a hash of the state root, so two roots (tests) never share a name.
The pod's cgroup holds the limits and no process: pause is in its child
`pause`, every member in its child `members` (as podman and Kubernetes hold
limits on a pod-level parent). Each moves itself in before it execs (writing
"0" to cgroup.procs: cgroups(7), the writer itself), so every process of the
pod is counted and nspod's own client is not. A member then gets a cgroup
namespace of its own rooted at `members` (it sees itself at "/"), and
anything it makes below is removed with the pod, bottom-up.
create() returns the directories; the pod record keeps them, so join, rm
and stats do not detect anything.

Lean on purpose (join imports it): paths are strings, no dataclasses, re or
hashlib at import.
"""

from __future__ import annotations

import errno
import os
import time

from nspod import lean
from nspod.errors import NspodError, os_reason
from nspod.limits import CFS_PERIOD_US, Limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

MOUNTINFO = "/proc/self/mountinfo"
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
V2_CONTROLLERS = ("memory", "pids", "cpu")
PARENT = "nspod"
PAUSE = "pause"  # the pod's child cgroup for pause
MEMBERS = "members"  # ... and for every member
V1_UNLIMITED = 1 << 62  # memory.limit_in_bytes reads PAGE_COUNTER_MAX pages when unlimited


# -- layout -----------------------------------------------------------------------------


class Layout:
    __slots__ = ("version", "mounts")

    def __init__(self, version: int, mounts: dict[str, str]) -> None:
        self.version = version  # 1 or 2
        self.mounts = mounts  # v1: controller -> its hierarchy's mount; v2: "" -> the mount

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and (self.version, self.mounts) == (
            other.version, other.mounts)

    def __repr__(self) -> str:
        return f"Layout({self.version}, {self.mounts!r})"

    def bases(self) -> list[str]:
        """Each hierarchy's nspod directory, once."""
        return [os.path.join(m, PARENT) for m in dict.fromkeys(self.mounts.values())]


def parse_mountinfo(text: str) -> Layout | None:
    """The layout the mounts in text (proc(5) mountinfo format) describe, or None."""
    v1: dict[str, str] = {}
    v2: list[str] = []
    for target, fstype, options in lean.mounts(text):
        if fstype == "cgroup2":
            v2.append(target)
        elif fstype == "cgroup":
            for opt in options.split(","):
                if opt in V1_CONTROLLERS and opt not in v1:
                    v1[opt] = target
    if "memory" in v1:
        return Layout(1, v1)
    if v2:
        best = next((m for m in v2 if "memory" in _controllers(m)), v2[0])
        return Layout(2, {"": best})
    if v1:
        return Layout(1, v1)
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode().strip()
    except OSError:
        return None


def _controllers(mount: str) -> set[str]:
    return set((_read(os.path.join(mount, "cgroup.controllers")) or "").split())


def detect() -> Layout | None:
    return parse_mountinfo(_read(MOUNTINFO) or "")


def root_key(root: str | os.PathLike[str]) -> str:
    """Names a state root in cgroup names: the same root always gives the same key."""
    from nspod.lean import sha256_hex

    return sha256_hex(os.path.realpath(root).encode())[:10]


def pod_dirs(layout: Layout | None, root: str | os.PathLike[str], pod: str) -> list[str]:
    """The pod's cgroup directories (one per hierarchy), whether they exist or not."""
    if layout is None:
        return []
    return [os.path.join(b, f"{root_key(root)}-{pod}") for b in layout.bases()]


# -- making, joining, removing --------------------------------------------------------


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NspodError(f"open {path}: {os_reason(e)}") from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise NspodError(f"write {value!r} to {path}: {os_reason(e)}") from e
    finally:
        os.close(fd)


def _enable_v2(base: str) -> None:
    """Hands memory, pids and cpu down to base's children (the root's to base first)."""
    for parent in (os.path.dirname(base), base):
        have = _controllers(parent)
        control = os.path.join(parent, "cgroup.subtree_control")
        on = _read(control)
        if on is None:
            raise NspodError(f"read {control}: cannot read it")
        missing = [c for c in V2_CONTROLLERS if c in have and c not in on.split()]
        if missing:
            _write(control, " ".join("+" + c for c in missing))


def _file(layout: Layout, dirs: Sequence[str], controller: str, name: str) -> str | None:
    """dirs' file `name` of controller, or None when the controller is not there."""
    if layout.version == 2:
        path = os.path.join(dirs[0], name)
        return path if os.path.exists(path) else None
    mount = layout.mounts.get(controller)
    if mount is None:
        return None
    for d in dirs:
        if os.path.dirname(os.path.dirname(d)) == mount:
            path = os.path.join(d, name)
            return path if os.path.exists(path) else None
    return None


def _set_limits(layout: Layout, dirs: Sequence[str], limits: Limits) -> None:
    def need(controller: str, name: str, flag: str) -> str:
        path = _file(layout, dirs, controller, name)
        if path is None:
            raise NspodError(f"{flag}: the {controller} cgroup controller is not available")
        return path

    if limits.memory is not None:
        if layout.version == 2:
            _write(need("memory", "memory.max", "--memory"), str(limits.memory))
            swap = _file(layout, dirs, "memory", "memory.swap.max")
            if swap is not None:
                _write(swap, "0")
        else:
            _write(need("memory", "memory.limit_in_bytes", "--memory"), str(limits.memory))
            # memory+swap equal to memory: no swap on top (docker --memory-swap default
            # is twice; podman's is the same, we keep the limit what the user said)
            memsw = _file(layout, dirs, "memory", "memory.memsw.limit_in_bytes")
            if memsw is not None:
                _write(memsw, str(limits.memory))
    if limits.pids is not None:
        _write(need("pids", "pids.max", "--pids"), str(limits.pids))
    if limits.cpus is not None:
        quota = round(limits.cpus * CFS_PERIOD_US)
        if layout.version == 2:
            _write(need("cpu", "cpu.max", "--cpus"), f"{quota} {CFS_PERIOD_US}")
        else:
            _write(need("cpu", "cpu.cfs_period_us", "--cpus"), str(CFS_PERIOD_US))
            _write(need("cpu", "cpu.cfs_quota_us", "--cpus"), str(quota))


def create(root: str | os.PathLike[str], pod: str, limits: Limits) -> list[str]:
    """Makes the pod's cgroup in every hierarchy and sets limits; returns its dirs.

    Without any cgroup filesystem a pod without limits gets none. On failure
    nothing made here is left.
    """
    layout = detect()
    if layout is None:
        if limits.any():
            raise NspodError("limits: no cgroup filesystem is mounted")
        return []
    dirs = pod_dirs(layout, root, pod)
    made: list[str] = []
    try:
        for base, d in zip(layout.bases(), dirs, strict=True):
            try:
                os.mkdir(base, 0o755)
            except FileExistsError:
                pass
            if layout.version == 2:
                _enable_v2(base)
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                # left by a create that crashed before gc ran: it is ours, reuse it empty
                if any(read_procs(t) for t in _tree(d)):
                    raise NspodError(f"cgroup {d}: already exists and is in use") from None
            made.append(d)
            for child in (PAUSE, MEMBERS):
                try:
                    os.mkdir(os.path.join(d, child), 0o755)
                except FileExistsError:
                    pass
        _set_limits(layout, dirs, limits)
    except OSError as e:
        remove(made)
        raise NspodError(f"make cgroup: {os_reason(e)}") from e
    except NspodError:
        remove(made)
        raise
    return dirs


def children(dirs: Iterable[str], child: str) -> list[str]:
    """The child cgroup `child` (PAUSE or MEMBERS) of each of the pod's dirs."""
    return [os.path.join(d, child) for d in dirs]


def _tree(top: str) -> list[str]:
    """top and every cgroup below it, deepest first (the order rmdir needs)."""
    out: list[str] = []
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return out
    except OSError:
        entries = []
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            out += _tree(e.path)
    out.append(top)
    return out


def tree_procs(top: str) -> list[int]:
    """Every process in top and in the cgroups below it."""
    return [p for d in _tree(top) for p in read_procs(d)]


def read_procs(d: str) -> list[int]:
    return [int(x) for x in (_read(os.path.join(d, "cgroup.procs")) or "").split()]


def open_procs(dirs: Iterable[str]) -> list[int]:
    """O_CLOEXEC fds a member writes "0" into to join dirs (see enter).

    On cgroup v1 the fd is the `tasks` file: moving the calling thread alone
    (a member is single-threaded when it joins) skips the threadgroup
    rwsem, whose writer waits for an RCU grace period (5-25 ms here) when
    joins come one at a time (kernel/cgroup/cgroup.c, cgroup_procs_write_start).
    On v2 it is cgroup.procs. A directory that is gone is skipped.
    """
    fds: list[int] = []
    d = ""
    try:
        for d in dirs:
            for name in ("tasks", "cgroup.procs"):
                try:
                    fds.append(os.open(os.path.join(d, name), os.O_WRONLY | os.O_CLOEXEC))
                    break
                except FileNotFoundError:
                    continue
    except OSError as e:
        close(fds)
        raise NspodError(f"open {d}/cgroup.procs: {os_reason(e)}") from e
    return fds


def enter(fds: Iterable[int]) -> None:
    """Moves the calling process into the cgroups behind fds (from open_procs).

    Through fds opened beforehand, so it works from any mount namespace or root.
    """
    for fd in fds:
        try:
            os.write(fd, b"0")
        except OSError as e:
            raise NspodError(f"join the pod's cgroup: {os_reason(e)}") from e


def close(fds: Iterable[int]) -> None:
    for fd in fds:
        os.close(fd)


def remove(dirs: Iterable[str], timeout: float = 2.0) -> None:
    """Removes dirs and every cgroup below them, bottom-up (rmdir(2) refuses a
    cgroup with children: a member's own child cgroup must not wedge rm);
    waits up to timeout for processes just killed to leave them.

    rmdir(2) fails with EBUSY while a process (even a dying one) is inside.
    """
    deadline = time.monotonic() + timeout
    for d in [t for top in dirs for t in _tree(top)]:
        delay = 0.001
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise NspodError(f"remove cgroup {d}: {os_reason(e)}") from e
                time.sleep(delay)
                delay = min(delay * 2, 0.05)


# -- figures --------------------------------------------------------------------------


def _read_opt(path: str | None) -> str | None:
    return None if path is None else _read(path)


def read_figure(layout: Layout, dirs: Sequence[str], controller: str, name: str) -> str | None:
    """The text of a controller's file in the pod's cgroup, or None when it has none."""
    return _read_opt(_file(layout, dirs, controller, name))


def stat_value(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return None


def oom_kills(dirs: Sequence[str]) -> int | None:
    """How many processes the OOM killer has killed in the pod's cgroup, if known.

    v2: `oom_kill N` in the pod's memory.events, which counts its whole
    subtree. v1: `oom_kill N` in memory.oom_control counts only the cgroup
    the victim was in (memcg_memory_event stops there on v1): summed over the
    pod's cgroup and every cgroup below it.
    """
    for d in dirs:
        value = stat_value(_read_opt(os.path.join(d, "memory.events")), "oom_kill")
        if value is not None:
            return value
        if os.path.exists(os.path.join(d, "memory.oom_control")):
            counts = [stat_value(_read_opt(os.path.join(t, "memory.oom_control")), "oom_kill")
                      for t in _tree(d)]
            return sum(c for c in counts if c is not None)
    return None
