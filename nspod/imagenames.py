"""Image names: docker references in full (`busybox` -> docker.io/library/busybox:latest),
split into repository and tag, and the file name a name is stored under.

Lean: `join --image` imports it (through image.py).
"""

from __future__ import annotations

import os

from nspod.errors import UsageError

DEFAULT_REGISTRY = "docker.io"
HEX = frozenset("0123456789abcdef")
_REPO_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def default_registry() -> str:
    """Where a short name (`busybox`, `team/app`) is looked for: $NSPOD_REGISTRY or docker.io."""
    return os.environ.get("NSPOD_REGISTRY") or DEFAULT_REGISTRY


def normalize(ref: str) -> str:
    """A docker reference in full: `busybox` -> `docker.io/library/busybox:latest`.

    Raises UsageError for what is not a reference (it becomes a file name).
    """
    raw = ref
    name, at, digest = ref.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = default_registry(), name
        if domain == DEFAULT_REGISTRY and "/" not in path:
            path = "library/" + path
    bad = (not path or not domain or any(ch not in _REPO_CHARS for ch in path)
           or "//" in path or path.startswith("/") or path.endswith("/")
           or not domain[0].isalnum() or any(not (ch.isalnum() or ch in ".-:[]") for ch in domain)
           or (tag and (len(tag) > 128 or any(ch not in _TAG_CHARS for ch in tag)))
           or (at and (tag or not digest.startswith("sha256:")
                       or len(digest) != 71 or any(c not in HEX for c in digest[7:]))))
    if bad:
        raise UsageError(f"invalid image reference {raw!r}")
    full = f"{domain}/{path}@{digest}" if at else f"{domain}/{path}:{tag or 'latest'}"
    if len(full) > 250:
        raise UsageError(f"invalid image reference {raw[:40]!r}...: too long")
    return full


def split_name(name: str) -> tuple[str, str]:
    """`reg/app:v1` -> (`reg/app`, `v1`); `reg/app@sha256:..` -> (`reg/app`, `<none>`)."""
    if "@" in name:
        return name.split("@", 1)[0], "<none>"
    repo, _, tag = name.rpartition(":")
    return repo, tag


def key(name: str) -> str:
    return name.replace("/", "+")  # '+' is never part of a reference
