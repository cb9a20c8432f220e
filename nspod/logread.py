"""`nspod logs`: a detached member's output, across rotated files and restarts.

    ROOT/pods/POD/logs/NAME.log     the log being written (CRI format)
    ROOT/pods/POD/logs/NAME.log.1   the one before, rotated by the logger

Every run of a member appends to the same log (a restart, a start after a
stop), so the whole history is one stream; the logger (csrc/logger.c) renames
NAME.log to NAME.log.1 when it would grow past --log-max-size.
"""

from __future__ import annotations

import os
import time

from nspod import exits, lean, member
from nspod.errors import NspodError, os_reason
from nspod.memberctl import find_member

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def parse_since(text: str, now: float | None = None) -> bytes:
    """--since: a duration ago (10m, 30s), a unix time or an RFC 3339 UTC time.

    Returns the CRI timestamp to compare log lines with (fixed width, so bytes
    compare as times do).
    """
    from nspod.policy import parse_duration

    now = time.time() if now is None else now
    t = text.strip()
    if "T" in t or t.count("-") == 2:
        return _rfc3339(t)
    try:
        when = float(t) if t.replace(".", "", 1).isdigit() and float(t) > 1e8 \
            else now - parse_duration(t)
    except ValueError:
        raise ValueError(f"{text!r}: use a duration (10m), a unix time or "
                         "2006-01-02T15:04:05Z") from None
    secs = int(when)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)).encode()
            + b".%09dZ" % int((when - secs) * 1e9))


def _rfc3339(t: str) -> bytes:
    date, _, clock = t.rstrip("Z").partition("T")
    if len(date) != 10 or date[4] != "-" or date[7] != "-":
        raise ValueError(f"{t!r} is not an RFC 3339 time (2006-01-02T15:04:05Z)")
    whole, _, frac = (clock or "00:00:00").partition(".")
    if len(whole) == 5:
        whole += ":00"
    if len(whole) != 8 or not frac.isdigit() and frac:
        raise ValueError(f"{t!r} is not an RFC 3339 time (2006-01-02T15:04:05Z)")
    return f"{date}T{whole}.{(frac + '0' * 9)[:9]}Z".encode()


def logs(root: str, pod_name: str, name: str, follow: bool, tail: int | None,
         timestamps: bool, out: Callable[[str, bytes], None], since: bytes | None = None) -> None:
    """Writes the member's log: out('stdout' | 'stderr', bytes)."""
    pod = member.Pod(root, pod_name)
    rec = find_member(pod, name)
    if not rec.get("detached"):
        raise NspodError(
            f'logs: member "{name}" ran in the foreground: its output went to its terminal')
    path = pod.path("logs", f"{name}.log")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NspodError(f'logs: no log for member "{name}"') from None
    except OSError as e:
        raise NspodError(f'logs: member "{name}": {os_reason(e)}') from e
    try:
        data = _read_rotated(path + ".1", fd) + _read_all(fd)
        lines, rest = _split(data)
        if since is not None:
            lines = [ln for ln in lines if ln[:30] >= since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            _emit(line, timestamps, out)
        if not follow:
            return
        while True:
            chunk = _read_all(fd)
            if chunk:
                lines, rest = _split(rest + chunk)
                for line in lines:
                    _emit(line, timestamps, out)
                continue
            if _rotated(path, fd):  # the logger started a new file: read it from its start
                os.close(fd)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                continue
            if _done(pod, name):
                chunk = _read_all(fd)
                if not chunk and not _rotated(path, fd):
                    return
                rest += chunk
                continue
            time.sleep(0.05)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_rotated(old: str, current: int) -> bytes:
    """The rotated file, unless it is the one already open (rotated meanwhile)."""
    try:
        fd = os.open(old, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, OSError):
        return b""
    try:
        if os.fstat(fd).st_ino == os.fstat(current).st_ino:
            return b""
        return _read_all(fd)
    finally:
        os.close(fd)


def _rotated(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _done(pod: member.Pod, name: str) -> bool:
    """Nothing more will be written: the member's run ended, its logger too, and
    no restart will follow (the record is read again: a restart replaces it)."""
    from nspod import policy

    if not pod.pause_alive():
        return True
    try:
        rec: dict[str, Any] = lean.loads(lean.read_text(pod.path("members", f"{name}.json")))
    except (OSError, ValueError):
        return True
    status, _ = member.run_status(pod, rec)
    if status is None or policy.will_restart(rec, status):
        return False
    return logger_done(pod, rec)


def logger_done(pod: member.Pod, rec: dict[str, Any]) -> bool:
    """The logger exits once every writer of the member's output is gone."""
    lp = rec.get("logger_pid", 0)
    if not lp:
        return True
    try:
        fd = os.open(pod.path("exits"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        return exits.read_exit_record(fd, lp) is not None
    finally:
        os.close(fd)


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    *lines, rest = data.split(b"\n")
    return lines, rest


def _emit(line: bytes, timestamps: bool, out: Callable[[str, bytes], None]) -> None:
    """One CRI log line: TIME STREAM F|P CONTENT."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return
    ts, stream, tag = parts[0], parts[1].decode(), parts[2]
    content = parts[3] if len(parts) == 4 else b""
    if tag == b"F":
        content += b"\n"
    if timestamps:
        content = ts + b" " + content
    out(stream, content)
