"""JSON and files for the paths that must start fast (join, ps, logs).

`import json` costs ~10 ms here (it imports re); CPython's C scanner and
encoder in `_json` do the same work with no import cost. Falls back to json
on an interpreter without them.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json

    class _Ctx:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float
        memo: dict[str, Any] = {}

    def _no_default(o: object) -> object:
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    _scan = _json.make_scanner(_Ctx())
    _encode = _json.make_encoder(
        None, _no_default, _json.encode_basestring_ascii, None, ": ", ", ", True, False, True
    )

    def loads(text: str) -> Any:
        obj, end = _scan(text, len(text) - len(text.lstrip()))
        if text[end:].strip():
            raise ValueError("extra data after JSON value")
        return obj

    def dumps(obj: Any) -> str:
        return "".join(_encode(obj, 0))

except (ImportError, AttributeError):  # pragma: no cover - other interpreters
    import json

    loads = json.loads

    def dumps(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True)


def read_text(path: str, dir_fd: int | None = None) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def write_atomic(path: str, text: str, dir_fd: int | None = None) -> None:
    """Replaces path with text: a reader sees the old file or the new, whole."""
    tmp = f".{os.path.basename(path)}.{os.getpid()}.tmp"
    tmp = os.path.join(os.path.dirname(path), tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def proc_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie pid, else None."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    rest = data[data.rindex(b")") + 2 :].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


NAME_MAX = 63
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def valid_name(name: str) -> bool:
    """[a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 63 characters (no `re`: it costs ~10 ms)."""
    return (
        0 < len(name) <= NAME_MAX
        and name[0] in _NAME_FIRST
        and all(ch in _NAME_REST for ch in name)
    )
