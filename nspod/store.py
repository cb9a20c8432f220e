"""The state directory: pod records, atomic writes, locks, process identity.

    ROOT/pods/NAME/pod.json       the record (written last on create)
    ROOT/pods/NAME/ns/KIND        bind mounts of pause's namespaces
    ROOT/pods/NAME/exits/PODPID   exit records pause writes for members
"""

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nspod.errors import NoSuchPod, UsageError
from nspod.lean import proc_start, valid_name

DEFAULT_ROOT = "/run/nspod"
NAME_MAX = 63
NS_KINDS = ("ipc", "uts", "net", "pid", "mnt")


def check_name(name: str, what: str = "pod name") -> str:
    if not name:
        raise UsageError(f"invalid {what} \"\": must not be empty")
    if len(name) > NAME_MAX:
        raise UsageError(f"invalid {what} \"{name[:20]}...\": longer than {NAME_MAX} characters")
    if not valid_name(name):
        raise UsageError(
            f"invalid {what} {json.dumps(name)}: use letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ProcId:
    """A process named by pid and start time: a recycled pid never matches."""

    pid: int
    start: int

    def alive(self) -> bool:
        return self.pid > 0 and proc_start(self.pid) == self.start




def procid(pid: int) -> ProcId:
    start = proc_start(pid)
    if start is None:
        raise ProcessLookupError(pid)
    return ProcId(pid, start)


@dataclass
class PodRecord:
    name: str
    hostname: str
    created: float
    state: str = "running"  # running | stopped | exited, as last recorded
    pid: int = 0
    pid_start: int = 0
    finished: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    net: dict[str, Any] = field(default_factory=dict)

    @property
    def pause(self) -> ProcId:
        return ProcId(self.pid, self.pid_start)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PodRecord":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def write_atomic(path: Path, text: str) -> None:
    """Replaces path with text: a reader sees the old file or the new, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.pods = self.root / "pods"

    def pod_dir(self, name: str) -> Path:
        return self.pods / name

    def ensure(self) -> None:
        self.pods.mkdir(parents=True, exist_ok=True, mode=0o711)

    def names(self) -> list[str]:
        try:
            return sorted(p.name for p in self.pods.iterdir() if (p / "pod.json").exists())
        except FileNotFoundError:
            return []

    def dirs(self) -> list[Path]:
        """Every pod directory, finished or not (gc looks at half-made ones too)."""
        try:
            return sorted(p for p in self.pods.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def load(self, name: str) -> PodRecord:
        check_name(name)
        try:
            text = (self.pod_dir(name) / "pod.json").read_text()
        except FileNotFoundError:
            raise NoSuchPod(f"pod {json.dumps(name)}: no such pod") from None
        return PodRecord.from_json(text)

    def save(self, rec: PodRecord) -> None:
        write_atomic(self.pod_dir(rec.name) / "pod.json", rec.to_json())

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Holds the pod's lock: an flock on its directory.

        rm deletes the directory while holding it, so a waiter must look the
        pod up again once it has the lock.
        """
        try:
            fd = os.open(self.pod_dir(name), os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise NoSuchPod(f"pod {json.dumps(name)}: no such pod") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """Like lock, without waiting: yields False when someone holds it."""
        try:
            fd = os.open(self.pod_dir(name), os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    @contextmanager
    def global_lock(self, resource: str) -> Iterator[None]:
        """A lock for a resource shared by pods (addresses, ports, the bridge)."""
        self.ensure()
        fd = os.open(self.root / f"{resource}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EINVAL):
            return None
        raise
