"""The /etc/hosts of the pods of a network: each lists the others by name.

    ROOT/networks/NAME/pods/POD     "IP NAMES" of each running pod of network NAME

create and start add the pod's entry, stop, rm, an exit and gc remove it;
each change rewrites the network's block (after a `# nspod network NAME`
line) in every member's hosts file, under an flock on the pods/ directory.
The cost is one read and one write per pod of the network.
"""

from __future__ import annotations

import os

from nspod import lean
from nspod.lean import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nspod.store import Store


MARK = "# nspod network "


def _pods(store: Store, name: str) -> str:
    return os.path.join(store.root, "networks", name, "pods")


def _entries(store: Store, name: str) -> dict[str, str]:
    d = _pods(store, name)
    out = {}
    try:
        for e in os.scandir(d):
            try:
                out[e.name] = lean.read_text(e.path).strip()
            except OSError:
                continue
    except FileNotFoundError:
        pass
    return out


def join(store: Store, name: str, pod: str, ip: str, hostnames: str) -> None:
    """pod is up on network name: every member's /etc/hosts gets it, it gets theirs."""
    d = _pods(store, name)
    os.makedirs(d, mode=0o755, exist_ok=True)
    with _DirLock(d):
        write_atomic(os.path.join(d, pod), f"{ip} {hostnames}\n", sync=False)
        _rewrite(store, name)


def leave(store: Store, name: str, *pods: str) -> None:
    """pods are down: they go from every other member's /etc/hosts, in one rewrite
    however many they are (gc). Idempotent."""
    d = _pods(store, name)
    if not any(os.path.exists(os.path.join(d, pod)) for pod in pods):
        return
    with _DirLock(d):
        for pod in pods:
            try:
                os.unlink(os.path.join(d, pod))
            except FileNotFoundError:
                continue
        _rewrite(store, name)


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


def _rewrite(store: Store, name: str) -> None:
    """Rewrites the network's block in each member's hosts file, in place.

    In place (same inode), because members have the file bind-mounted: a
    new file renamed over it would not be what they see.
    """
    entries = sorted(_entries(store, name).items())
    # each pod's line rendered once; a pod's block is every line but its own
    # (joined at C speed), and each file is read and written as bytes once:
    # a rewrite costs O(pods), not O(pods^2) in Python
    lines = [f"{e.split(' ', 1)[0]}\t{e.split(' ', 1)[1]}\n".encode() if " " in e else b""
             for _, e in entries]
    mark = MARK.encode()
    head = mark + name.encode() + b"\n"
    for i, (pod, _) in enumerate(entries):
        path = os.path.join(store.pod_dir(pod), "etc", "hosts")
        block = head + b"".join(lines[:i]) + b"".join(lines[i + 1:])
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # a pod being removed
        try:
            text = lean.read_fd(fd)
            at = text.find(mark)
            at = len(text) if at < 0 else at
            if text[at:] != block:
                os.pwrite(fd, block, at)
                os.ftruncate(fd, at + len(block))
        except OSError:
            pass
        finally:
            os.close(fd)


def members(store: Store, name: str) -> dict[str, str]:
    """pod -> address of the running pods of network name."""
    return {pod: entry.split()[0] for pod, entry in _entries(store, name).items() if entry}


def gc(store: Store, networks: list[str]) -> None:
    """Drops entries of pods that are gone or not running (a crash between steps)."""
    from nspod.errors import NoSuchPod

    for name in networks:
        gone = []
        for pod in _entries(store, name):
            try:
                alive = store.load(pod).state == "running"
            except (NoSuchPod, ValueError, OSError):
                alive = False
            if not alive:
                gone.append(pod)
        leave(store, name, *gone)
