"""The verbs on members already started: ps, logs, kill.

    ROOT/pods/POD/members/NAME.json   one record per member started by join
    ROOT/pods/POD/logs/NAME.log       a detached member's output (CRI format)
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os
import time

from nspod import lean, spawn
from nspod.errors import NspodError, os_reason
from nspod.member import Pod, member_records, member_state, read_member

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def ps(root: str, pod_name: str) -> list[dict[str, Any]]:
    pod = Pod(root, pod_name)
    out = []
    for rec, _ in member_records(pod):
        if "pod_pid" not in rec:
            continue
        state, finished = member_state(pod, rec)
        out.append({
            "name": rec["name"],
            "pid": rec["host_pid"],
            "pod_pid": rec["pod_pid"],
            "command": rec["argv"],
            "state": state,
            "detached": rec.get("detached", False),
            "started": rec["started"],
            "finished": finished,
        })
    out.sort(key=lambda m: m["started"])
    return out


def find_member(pod: Pod, name: str) -> dict[str, Any]:
    lean.check_name(name, "member name")
    try:
        rec = read_member(pod.path("members", f"{name}.json"))
    except FileNotFoundError:
        rec = None
    if rec is None:
        raise NspodError(f'pod "{pod.name}": no member "{name}"')
    return rec


# -- logs -------------------------------------------------------------------------


def logs(
    root: str,
    pod_name: str,
    name: str,
    follow: bool,
    tail: int | None,
    timestamps: bool,
    out: Callable[[str, bytes], None],
) -> None:
    """Writes the member's log: out('stdout' | 'stderr', bytes)."""
    pod = Pod(root, pod_name)
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
        data = b""
        while chunk := os.read(fd, 1 << 20):
            data += chunk
        lines, rest = _split(data)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            _emit(line, timestamps, out)
        if not follow:
            return
        while True:
            chunk = os.read(fd, 1 << 20)
            if chunk:
                lines, rest = _split(rest + chunk)
                for line in lines:
                    _emit(line, timestamps, out)
                continue
            if _logger_done(pod, rec):
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return
                rest += chunk
                continue
            time.sleep(0.05)
    finally:
        os.close(fd)


def _logger_done(pod: Pod, rec: dict[str, Any]) -> bool:
    """The logger exits once every writer of the member's output is gone."""
    if not pod.pause_alive():
        return True
    lp = rec.get("logger_pid", 0)
    if not lp:
        return member_state(pod, rec)[0] != "running"
    try:
        fd = os.open(pod.path("exits"),
                     os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        return spawn.read_exit_record(fd, lp) is not None
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


# -- kill -------------------------------------------------------------------------


def parse_signal(text: str) -> int:
    import signal as sigmod

    t = text.upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
        raise ValueError(f"{text!r} is not a signal number")
    if not t.startswith("SIG"):
        t = "SIG" + t
    sig = getattr(sigmod, t, None)
    if not isinstance(sig, sigmod.Signals):
        raise ValueError(f"unknown signal {text!r}")
    return int(sig)


def kill_member(root: str, pod_name: str, name: str, sig: int) -> None:
    pod = Pod(root, pod_name)
    rec = find_member(pod, name)
    if member_state(pod, rec)[0] != "running":
        raise NspodError(f'kill: member "{name}" is not running')
    try:
        fd = os.pidfd_open(rec["host_pid"])
    except ProcessLookupError:
        raise NspodError(f'kill: member "{name}" is not running') from None
    try:
        # checked after opening the pidfd: the pidfd then names this very process
        if lean.proc_start(rec["host_pid"]) != rec.get("pid_start"):
            raise NspodError(f'kill: member "{name}" is not running')
        signal.pidfd_send_signal(fd, sig)
    except OSError as e:
        raise NspodError(f'kill member "{name}": {os_reason(e)}') from e
    finally:
        os.close(fd)
