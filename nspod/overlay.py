"""A member's overlay root: its image below, read-only; its own upper and work dirs
(member.py's join --image)."""

from __future__ import annotations

import os

from nspod.errors import NspodError, os_reason
from nspod.image import remove_tree


class Overlay:
    """A member's root: the image below, read-only; its own upper and work dirs.

    They live beside the member's record (pods/POD/members/NAME.overlay) and go
    with it: when the name is reused, and with the pod.
    """

    __slots__ = ("lower", "upper", "work", "merged")

    def __init__(self, lower: str, base: str) -> None:
        self.lower = lower
        self.upper = os.path.join(base, "upper")
        self.work = os.path.join(base, "work")
        # mounted over base itself: the member's root hides upper and work, and a
        # join makes one directory fewer
        self.merged = base
        for p in (lower, base):
            if any(ch in p for ch in ",:\\"):
                raise NspodError(f"overlay {p}: a path with ',', ':' or '\\' cannot be used")

    @classmethod
    def make(cls, lower: str, base: str) -> Overlay:
        """Fresh, empty dirs at base (an old member's of that name are removed)."""
        ov = cls(lower, base)
        try:
            os.mkdir(base, 0o755)
        except FileExistsError:
            remove_tree(base)
            os.mkdir(base, 0o755)
        for d in (ov.upper, ov.work):
            os.mkdir(d, 0o755)
        return ov

    def mount(self) -> None:
        """Mounts it at merged; in the member's own mount namespace (nothing on the host).

        volatile: the upper is scratch, so umount skips syncing it. The image is
        hostile: overlay's own xattrs in it (trusted.overlay.redirect, metacopy)
        are never followed (overlayfs.rst).
        """
        from nspod import syscalls as sc

        try:
            sc.mount("overlay", self.merged, "overlay", sc.MS_NODEV,
                     f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work},"
                     "volatile,redirect_dir=nofollow,metacopy=off")
        except OSError as e:
            raise NspodError(f"overlay root {self.merged}: {os_reason(e)}") from e
