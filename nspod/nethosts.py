"""The /etc/hosts of the pods of a network: each lists the others by name.

    ROOT/networks/NAME/pods/.entries    "POD IP NAMES" of each running pod of network NAME

create and start add the pod's entry, stop, rm, an exit and gc remove it;
each change rewrites the network's block (after a `# nspod network NAME`
line) in every member's hosts file, under an flock on the pods/ directory.
The cost is one read and one write per pod of the network, and the entries
are one file, so a create on a network of 300 pods makes ~1,200 syscalls
here, not ~3,000.
"""

from __future__ import annotations

import os

from nspod import lean
from nspod.lean import valid_name, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nspod.store import Store


MARK = "# nspod network "
ENTRIES = ".entries"  # a dot name: no pod can have it


def _pods(store: Store, name: str) -> str:
    return os.path.join(store.root, "networks", name, "pods")


def _entries(d: str) -> dict[str, str]:
    """pod -> "IP NAMES" of the running pods of the network whose pods/ is d."""
    try:
        text = lean.read_text(os.path.join(d, ENTRIES))
    except FileNotFoundError:
        return _entries_by_file(d)
    except (OSError, UnicodeDecodeError):
        return {}  # damaged: the next join or leave writes it whole again
    out = {}
    for line in text.splitlines():
        pod, _, entry = line.partition(" ")
        if valid_name(pod) and " " in entry.strip():
            out[pod] = entry.strip()
    return out


def _entries_by_file(d: str) -> dict[str, str]:
    """The entries as an older nspod kept them, a file per pod (pods running across
    an upgrade); the next _save writes them as one file and removes these."""
    out = {}
    try:
        for e in os.scandir(d):
            if valid_name(e.name):
                try:
                    entry = lean.read_text(e.path).strip()
                except (OSError, UnicodeDecodeError):
                    continue
                if " " in entry:
                    out[e.name] = entry
    except FileNotFoundError:
        pass
    return out


def _save(d: str, entries: dict[str, str]) -> None:
    """The entries, replaced whole; under the lock."""
    legacy = not os.path.exists(os.path.join(d, ENTRIES))
    write_atomic(os.path.join(d, ENTRIES),
                 "".join(f"{pod} {entry}\n" for pod, entry in sorted(entries.items())),
                 sync=False)
    if legacy:
        for e in os.scandir(d):
            if valid_name(e.name):
                os.unlink(e.path)


def join(store: Store, name: str, pod: str, ip: str, hostnames: str) -> None:
    """pod is up on network name: every member's /etc/hosts gets it, it gets theirs."""
    d = _pods(store, name)
    os.makedirs(d, mode=0o755, exist_ok=True)
    with _DirLock(d):
        entries = _entries(d)
        entries[pod] = f"{ip} {hostnames}"
        _save(d, entries)
        _rewrite(store, name, entries)


def leave(store: Store, name: str, *pods: str) -> None:
    """pods are down: they go from every other member's /etc/hosts, in one rewrite
    however many they are (gc). Idempotent."""
    d = _pods(store, name)
    held = _entries(d)
    if not any(pod in held for pod in pods):
        return
    with _DirLock(d):
        entries = _entries(d)
        for pod in pods:
            entries.pop(pod, None)
        # files first, entries after (join: the other way round), so the entries
        # always hold every pod a hosts file may name: a leave killed half way
        # is done again whole by the next one (gc)
        _rewrite(store, name, entries)
        _save(d, entries)


class _DirLock:
    """flock on the network's pods/ directory: one rewrite of its hosts files at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _rewrite(store: Store, name: str, entries: dict[str, str]) -> None:
    """Rewrites the network's block in each member's hosts file, in place.

    In place (same inode), because members have the file bind-mounted: a
    new file renamed over it would not be what they see.
    """
    ordered = sorted(entries.items())
    # each pod's line rendered once; a pod's block is every line but its own
    # (joined at C speed), and each file is read and written as bytes once:
    # a rewrite costs O(pods), not O(pods^2) in Python
    lines = [f"{e.split(' ', 1)[0]}\t{e.split(' ', 1)[1]}\n".encode() for _, e in ordered]
    mark = MARK.encode()
    head = mark + name.encode() + b"\n"
    for i, (pod, _) in enumerate(ordered):
        path = os.path.join(store.pod_dir(pod), "etc", "hosts")
        block = head + b"".join(lines[:i]) + b"".join(lines[i + 1:])
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # a pod being removed
        try:
            text = os.read(fd, 65536)
            if len(text) == 65536:
                text += lean.read_fd(fd)
            at = text.find(mark)
            at = len(text) if at < 0 else at
            if text[at:] != block:
                os.pwrite(fd, block, at)
                if at + len(block) < len(text):
                    os.ftruncate(fd, at + len(block))
        except OSError:
            pass
        finally:
            os.close(fd)
        lean.checkpoint("hosts-file")  # NSPOD_KILL_AT: a rewrite killed half way


def members(store: Store, name: str) -> dict[str, str]:
    """pod -> address of the running pods of network name."""
    return {pod: entry.split()[0] for pod, entry in _entries(_pods(store, name)).items()}


def gc(store: Store, networks: list[str]) -> None:
    """Drops entries of pods that are gone or not running (a crash between steps)."""
    from nspod.errors import NoSuchPod

    for name in networks:
        gone = []
        for pod in _entries(_pods(store, name)):
            try:
                alive = store.load(pod).state == "running"
            except (NoSuchPod, ValueError, OSError):
                alive = False
            if not alive:
                gone.append(pod)
        leave(store, name, *gone)
