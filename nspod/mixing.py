"""Members with a rootfs and members on the host's files, in one pod or not.

A member without a rootfs is root on the host's files, like a command run
with `ip netns exec`. Its /proc/PID/root is then the host's whole tree to
any member with the same rights, so a rootfs member next to it would be one
`cat /proc/PID/root/etc/shadow` away from the host. A join of one kind into a
pod that has had the other is refused unless the user says --mix-roots.

Lean on purpose: join imports it.
"""

from __future__ import annotations

import os

from nspod import lean
from nspod.errors import NspodError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nspod.member import Pod


def claim(pod: Pod, host: bool, mix: bool) -> None:
    """Refuses a member with a rootfs in a pod that has had members on the host's
    files since pause started, and the reverse, unless mix.

    A member on the host's files is root on them, and /proc/PID/root of it is
    the host's whole tree to any member with the same capabilities: a rootfs
    member would be one `cat /proc/PID/root/etc/shadow` away from the host.
    Non-dumpable would close that door only until the member's exec (which
    makes it dumpable again), so the pod remembers which kinds it has had:
    pods/NAME/members/.host-root and .rootfs, holding pause's pid and start
    time (a restarted pod starts clean). Each join marks its own kind before
    it looks for the other, so two racing joins of each kind cannot both pass.
    """
    token = f'{pod.rec.get("pid")} {pod.rec.get("pid_start")}'
    mine, other = (".host-root", ".rootfs") if host else (".rootfs", ".host-root")
    made = _mark(pod.path("members", mine), token)
    if mix or _marker(pod.path("members", other)) != token:
        return
    if made:
        _drop_marker(pod.path("members", mine))
    have = "members with a rootfs" if host else "members on the host's files"
    raise NspodError(
        f'join pod "{pod.name}": the pod has {have}, and a rootfs member could reach the '
        "host's files through a member without one: --mix-roots to allow it")


def _marker(path: str) -> str | None:
    try:
        return lean.read_text(path)
    except (OSError, UnicodeDecodeError):
        return None


def _mark(path: str, token: str) -> bool:
    """Writes token at path unless it is there; True when this call wrote it."""
    if _marker(path) == token:
        return False
    lean.write_atomic(path, token, sync=False)
    return True


def _drop_marker(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
