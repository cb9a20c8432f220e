"""The one way nspod reads a JSON record (pod.json, members/NAME.json).

Anything wrong with the file (a directory in its place, unreadable, empty,
truncated, not JSON, not an object, a field of the wrong type) becomes
DamagedRecord naming the file: one line for the user, never a traceback.
A missing file stays FileNotFoundError: each caller says what that means.
"""

from __future__ import annotations

from nspod import lean
from nspod.errors import DamagedRecord
from nspod.errors import os_reason as _reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NUMBER = (int, float)
_MAYBE_NUMBER = (int, float, type(None))

POD = {  # field -> the types it may have; PodRecord's fields
    "name": str, "hostname": str, "created": _NUMBER, "state": str, "pid": int,
    "pid_start": int, "finished": _MAYBE_NUMBER, "spec": dict, "net": dict,
}
POD_REQUIRED = ("name", "hostname", "created", "state")
MEMBER = {
    "name": str, "argv": list, "host_pid": int, "pod_pid": int, "pid_start": int,
    "logger_pid": int, "started": _NUMBER, "detached": bool, "tty": bool,
    "oom_kills": (int, type(None)), "status": int, "finished": _MAYBE_NUMBER,
    # a detached member's, to run it again (runspec.py, monitor.py)
    "spec": dict, "restart": str, "health": dict, "restarts": int, "backoff": _NUMBER,
    "last_status": int, "last_finished": _MAYBE_NUMBER, "user_stopped": bool,
    "pod_stopped": bool, "health_restart": bool,
}
MEMBER_REQUIRED = ("name", "argv", "host_pid", "pod_pid", "started")


def read(path: str, fields: dict[str, Any], required: tuple[str, ...],
         dir_fd: int | None = None) -> dict[str, Any]:
    """The record at path, checked against fields; DamagedRecord when it is not one."""
    data = read_claimed(path, fields, required, dir_fd)
    if data is None:
        raise DamagedRecord(path, "empty")
    return data


def read_claimed(path: str, fields: dict[str, Any], required: tuple[str, ...],
                 dir_fd: int | None = None) -> dict[str, Any] | None:
    """read, but an empty file is None: claimed (O_EXCL) and not yet written."""
    try:
        text = lean.read_text(path, dir_fd)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DamagedRecord(path, _reason(e)) from None
    except UnicodeDecodeError:
        raise DamagedRecord(path, "not UTF-8 text") from None
    if not text:
        return None
    try:
        data = lean.loads(text)
    except ValueError as e:
        raise DamagedRecord(path, str(e)) from None
    if not isinstance(data, dict):
        raise DamagedRecord(path, "not a JSON object")
    for key in required:
        if key not in data:
            raise DamagedRecord(path, f"no {key!r}")
    for key, types in fields.items():
        if key in data and not isinstance(data[key], types):
            raise DamagedRecord(path, f"{key!r} is a {type(data[key]).__name__}")
    return data
