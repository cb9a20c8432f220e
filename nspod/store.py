"""The state directory: pod records, atomic writes, locks, process identity.

    ROOT/pods/NAME/pod.json       the record (written last on create)
    ROOT/ns/NAME/KIND             bind mounts of pause's namespaces (pins.py)
    ROOT/pods/NAME/exits/PODPID   exit records pause writes for members

Paths are plain strings and records plain classes: pathlib, dataclasses and
json cost 10-25 ms each to import here, paid by every nspod command.
"""

from __future__ import annotations

import fcntl
import os

from nspod import lean, records
from nspod.errors import NoSuchPod
from nspod.lean import check_name, proc_start, write_atomic


def storage_root() -> str:
    """What outlives a reboot (pod specs, images): $NSPOD_STORAGE or /var/lib/nspod."""
    return os.environ.get("NSPOD_STORAGE") or "/var/lib/nspod"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

class ProcId:
    """A process named by pid and start time: a recycled pid never matches."""

    __slots__ = ("pid", "start")

    def __init__(self, pid: int, start: int) -> None:
        self.pid = pid
        self.start = start

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProcId) and (self.pid, self.start) == (other.pid, other.start)

    def __hash__(self) -> int:
        return hash((self.pid, self.start))

    def __repr__(self) -> str:
        return f"ProcId({self.pid}, {self.start})"

    def alive(self) -> bool:
        return self.pid > 0 and proc_start(self.pid) == self.start


STATES = {  # what each state promises about the kernel objects the pod holds
    "running": "pause alive (else settled), the namespaces, cgroup, veth, address, ports",
    "stopped": "no process; address and ports kept for start",
    "exited": "nothing: pause died and everything was freed",
    # intents: written before the act, so a killed verb leaves one behind
    "starting": "anything, found by the pod's name (a start in progress or killed)",
    "releasing": "what the record names: a free that failed, retried by the next verb",
    "removing": "what the record names, being freed: rm -f or gc finishes the removal",
}


class PodRecord:
    """What nspod knows of a pod: its spec and its runtime facts."""

    FIELDS = ("name", "hostname", "created", "state", "pid", "pid_start", "finished", "spec",
              "net")
    __slots__ = FIELDS

    def __init__(
        self,
        name: str,
        hostname: str,
        created: float,
        state: str = "running",  # running | stopped | exited; or an intent: see STATES
        pid: int = 0,
        pid_start: int = 0,
        finished: float | None = None,
        spec: dict[str, Any] | None = None,
        net: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.created = created
        self.state = state
        self.pid = pid
        self.pid_start = pid_start
        self.finished = finished
        self.spec: dict[str, Any] = {} if spec is None else spec
        self.net: dict[str, Any] = {} if net is None else net

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PodRecord) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"PodRecord({self.to_dict()!r})"

    @property
    def pause(self) -> ProcId:
        return ProcId(self.pid, self.pid_start)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def to_json(self) -> str:
        return lean.dumps(self.to_dict()) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PodRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.FIELDS})


class _Flock:
    """An flock held for a with-block. entered: False when non-blocking and busy."""

    def __init__(self, path: str, flags: int, blocking: bool = True,
                 missing: Exception | None = None) -> None:
        self.path, self.flags, self.blocking, self.missing = path, flags, blocking, missing
        self.fd = -1

    def __enter__(self) -> bool:
        try:
            self.fd = os.open(self.path, self.flags | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            if self.missing is not None:
                raise self.missing from None
            return False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.pods = os.path.join(self.root, "pods")
        self.nsroot = os.path.join(self.root, "ns")  # namespace pins: pins.py

    def pod_dir(self, name: str) -> str:
        return os.path.join(self.pods, name)

    def ensure(self) -> None:
        os.makedirs(self.pods, mode=0o711, exist_ok=True)

    def _entries(self) -> list[os.DirEntry[str]]:
        try:
            return sorted(os.scandir(self.pods), key=lambda e: e.name)
        except FileNotFoundError:
            return []

    def names(self) -> list[str]:
        return [e.name for e in self._entries()
                if os.path.exists(os.path.join(e.path, "pod.json"))]

    def dirs(self) -> list[str]:
        """Every pod directory, finished or not (gc looks at half-made ones too)."""
        return [e.path for e in self._entries() if e.is_dir()]

    def load(self, name: str) -> PodRecord:
        check_name(name)
        return PodRecord.from_dict(records.read_pod(self.pod_dir(name), name))

    def save(self, rec: PodRecord) -> None:
        write_atomic(os.path.join(self.pod_dir(rec.name), "pod.json"), rec.to_json())

    def lock(self, name: str) -> _Flock:
        """Holds the pod's lock: an flock on its directory.

        rm deletes the directory while holding it, so a waiter must look the
        pod up again once it has the lock.
        """
        return _Flock(self.pod_dir(name), os.O_RDONLY | os.O_DIRECTORY,
                      missing=NoSuchPod(f'pod "{name}": no such pod'))

    def try_lock(self, name: str) -> _Flock:
        """Like lock, without waiting: enters as False when someone holds it."""
        return _Flock(self.pod_dir(name), os.O_RDONLY | os.O_DIRECTORY, blocking=False)

    def global_lock(self, resource: str) -> _Flock:
        """A lock for a resource shared by pods (addresses, ports, the bridge)."""
        self.ensure()
        return _Flock(os.path.join(self.root, f"{resource}.lock"), os.O_RDWR | os.O_CREAT)
