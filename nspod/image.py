"""Images: the local store, lookups, use by pods, removal. Names: imagenames.py; a
member's overlay root: overlay.py.

    STORAGE/images/                 STORAGE: $NSPOD_STORAGE or /var/lib/nspod (store.storage_root)
      store.lock                    flock: commits, name changes, rm, prune
      tmp/RANDOM/                   a pull, load or import under way (flocked by it)
      locks/NAME.lock               one pull per name at a time
      names/NAME                    the id a name points to (NAME with '/' as '+')
      ID/                           one image, unpacked once (ID: sha256 of its config)
        image.json                  config, manifest, layers, size, created
        rootfs/                     the unpacked root: the read-only lower layer of members
        users/KEY                   pod directories that use it (image rm refuses then)

Fetching and unpacking (skopeo, umoci) is in imagefetch; this module is what
`join --image` imports, so it stays lean: no json, subprocess, pathlib.
The API other modules build on (kube): ensure(store, ref, pull_policy) -> Image.
"""

from __future__ import annotations

import fcntl
import os

from nspod import lean
from nspod.errors import NoSuchImage, NspodError, UsageError, os_reason
from nspod.imagenames import HEX, key, normalize
from nspod.store import storage_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PULL_POLICIES = ("always", "missing", "never")


# -- the store ------------------------------------------------------------------------


class Image:
    """An image in the store: its id, directory and record (image.json)."""

    __slots__ = ("id", "dir", "rec")

    def __init__(self, image_id: str, directory: str, rec: dict[str, Any]) -> None:
        self.id = image_id
        self.dir = directory
        self.rec = rec

    @property
    def root(self) -> str:
        """The unpacked root filesystem (never written: members get an overlay of it)."""
        return os.path.join(self.dir, "rootfs")

    @property
    def config(self) -> dict[str, Any]:
        """The image's runtime config: Entrypoint, Cmd, Env, WorkingDir, User, ..."""
        return self.rec.get("config", {}).get("config") or {}


class _Flock:
    def __init__(self, path: str, flags: int, op: int) -> None:
        self.path, self.flags, self.op, self.fd = path, flags, op, -1

    def __enter__(self) -> int:
        self.fd = os.open(self.path, self.flags | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, self.op)
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class ImageStore:
    def __init__(self, storage: str | None = None) -> None:
        self.top = os.path.join(storage or storage_root(), "images")
        self.names = os.path.join(self.top, "names")
        self.tmp = os.path.join(self.top, "tmp")
        self.locks = os.path.join(self.top, "locks")

    def ensure(self) -> None:
        for d in (self.top, self.names, self.tmp, self.locks):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def image_dir(self, image_id: str) -> str:
        return os.path.join(self.top, image_id)

    def lock(self) -> _Flock:
        """The store's lock: held to commit an image, change names, remove."""
        self.ensure()
        return _Flock(os.path.join(self.top, "store.lock"), os.O_RDWR | os.O_CREAT,
                      fcntl.LOCK_EX)

    def name_lock(self, name: str) -> _Flock:
        """One pull of a name at a time; a second waits, then finds it there."""
        self.ensure()
        return _Flock(os.path.join(self.locks, key(name) + ".lock"), os.O_RDWR | os.O_CREAT,
                      fcntl.LOCK_EX)

    def image_lock(self, image_id: str, shared: bool) -> _Flock:
        return _Flock(self.image_dir(image_id), os.O_RDONLY | os.O_DIRECTORY,
                      fcntl.LOCK_SH if shared else fcntl.LOCK_EX)

    def ids(self) -> list[str]:
        try:
            entries = os.listdir(self.top)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if len(e) == 64 and not set(e) - HEX
                      and os.path.exists(os.path.join(self.top, e, "image.json")))

    def load(self, image_id: str) -> Image:
        d = self.image_dir(image_id)
        try:
            rec = lean.loads(lean.read_text(os.path.join(d, "image.json")))
        except FileNotFoundError:
            raise NoSuchImage(f"image {image_id[:12]}: no such image") from None
        return Image(image_id, d, rec)

    def name_map(self) -> dict[str, str]:
        """Every name -> the id it points to."""
        out = {}
        try:
            keys = os.listdir(self.names)
        except FileNotFoundError:
            return {}
        for k in keys:
            if k.startswith("."):
                continue
            try:
                out[k.replace("+", "/")] = lean.read_text(os.path.join(self.names, k)).strip()
            except OSError:
                continue
        return out

    def names_of(self, image_id: str) -> list[str]:
        return sorted(n for n, i in self.name_map().items() if i == image_id)

    def set_name(self, name: str, image_id: str) -> None:
        """Points name at image_id (call with the store's lock held)."""
        lean.write_atomic(os.path.join(self.names, key(name)), image_id + "\n")

    def drop_name(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.names, key(name)))
        except FileNotFoundError:
            pass

    def resolve(self, ref: str) -> str | None:
        """The id ref names: a full or short name, an id or a unique id prefix."""
        return self.lookup(ref)[0]

    def lookup(self, ref: str) -> tuple[str | None, str | None]:
        """(id, the stored name ref matched, None when it matched an id)."""
        try:
            full = normalize(ref)
        except UsageError:
            full = ""
        if full:
            try:
                return lean.read_text(os.path.join(self.names, key(full))).strip(), full
            except FileNotFoundError:
                pass
        low = ref.removeprefix("sha256:")
        if 3 <= len(low) <= 64 and not set(low) - HEX:
            hits = [i for i in self.ids() if i.startswith(low)]
            if len(hits) == 1:
                return hits[0], None
            if len(hits) > 1:
                raise UsageError(f"image {ref}: more than one image id starts so")
        if full and "." not in ref.split("/", 1)[0] and "@" not in ref:
            # a short name: the one stored name from any registry that ends so
            tagged = ref if ":" in ref.rsplit("/", 1)[-1] else ref + ":latest"
            found = {n: i for n, i in self.name_map().items() if n.endswith("/" + tagged)}
            if len(set(found.values())) == 1:
                name = next(iter(found)) if len(found) == 1 else None
                return found[next(iter(found))], name
            if found:
                raise UsageError(f"image {ref}: more than one stored image has this name "
                                 "(give it in full)")
        return None, None

    def get(self, ref: str) -> Image:
        image_id = self.resolve(ref)
        if image_id is None:
            raise NoSuchImage(f"image {ref}: no such image (nspod image pull {ref})")
        return self.load(image_id)

    # -- who uses an image ------------------------------------------------------------

    def use(self, image_id: str, user_dir: str) -> Image:
        """Records that the pod directory user_dir uses the image (until that pod is gone).

        Under the image's shared lock: rm (exclusive) either sees the record or
        has removed the image before, and then this fails.
        """
        with self.hold(image_id, user_dir) as img:
            return img

    def hold(self, image_id: str, user_dir: str) -> _Hold:
        """use(), keeping the shared lock for a with-block (a create that makes user_dir:
        rm waits, then finds the pod)."""
        return _Hold(self, image_id, user_dir)

    def _register(self, image_id: str, user_dir: str) -> Image:
        img = self.load(image_id)
        users = os.path.join(img.dir, "users")
        os.makedirs(users, 0o700, exist_ok=True)
        path = os.path.join(users, lean.sha256_hex(user_dir.encode())[:32])
        if not os.path.exists(path):
            lean.write_atomic(path, user_dir + "\n", sync=False)
        return img

    def users(self, image_id: str) -> list[str]:
        """Pod directories that use the image and still exist; forgets the others."""
        users = os.path.join(self.image_dir(image_id), "users")
        try:
            keys = os.listdir(users)
        except FileNotFoundError:
            return []
        live = []
        for k in keys:
            path = os.path.join(users, k)
            try:
                user_dir = lean.read_text(path).strip()
            except OSError:
                continue
            if os.path.isdir(user_dir):
                live.append(user_dir)
            elif not k.startswith("."):
                os.unlink(path)
        return sorted(live)


class _Hold:
    def __init__(self, store: ImageStore, image_id: str, user_dir: str) -> None:
        self.store, self.image_id, self.user_dir = store, image_id, user_dir
        self.lock = store.image_lock(image_id, shared=True)

    def __enter__(self) -> Image:
        try:
            self.lock.__enter__()
        except FileNotFoundError:
            raise NoSuchImage(f"image {self.image_id[:12]}: no such image") from None
        try:
            return self.store._register(self.image_id, self.user_dir)
        except BaseException:
            self.lock.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        self.lock.__exit__()


# -- cleaning up (image rm and prune are in imagerm) -------------------------------


def clean_tmp(store: ImageStore) -> None:
    """Removes the leftovers of pulls that died (their lock is free)."""
    try:
        entries = os.listdir(store.tmp)
    except FileNotFoundError:
        return
    for e in entries:
        path = os.path.join(store.tmp, e)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a pull at work
        finally:
            os.close(fd)
        remove_tree(path)


def remove_tree(top: str) -> None:
    """rm -r top, never following symlinks (an image holds what its author put in it)."""
    try:
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        raise NspodError(f"remove {top}: {os_reason(e)}") from e
    try:
        _clear(fd)
    finally:
        os.close(fd)
    os.rmdir(top)


def _clear(dfd: int) -> None:
    with os.scandir(dfd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        if is_dir:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dfd)
            try:
                _clear(sub)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)


# -- use by pods and members ----------------------------------------------------------


def check_policy(policy: str) -> str:
    if policy not in PULL_POLICIES:
        raise UsageError(f"pull policy {policy!r}: use one of {', '.join(PULL_POLICIES)}")
    return policy


def ensure(store: ImageStore, ref: str, pull_policy: str = "missing",
           tls_verify: bool = True) -> Image:
    """The image ref names, pulled first when the policy says so.

    pull_policy: always (pull, as Kubernetes' Always), missing (pull when not
    stored: IfNotPresent), never (stored or NoSuchImage).
    """
    check_policy(pull_policy)
    if pull_policy != "always":
        image_id = store.resolve(ref)
        if image_id is not None:
            return store.load(image_id)
        if pull_policy == "never":
            raise NoSuchImage(f"image {ref}: no such image (and the pull policy is never)")
    from nspod import imagefetch

    return imagefetch.pull(store, ref, tls_verify=tls_verify)


def command(config: dict[str, Any], cmd: list[str] | None = None,
            args: list[str] | None = None) -> list[str]:
    """What a member runs, as Kubernetes decides it.

    cmd replaces the image's Entrypoint (and its Cmd); args replace Cmd.
    `nspod join -- CMD` passes cmd.
    """
    if cmd:
        return list(cmd) + list(args or [])
    return list(config.get("Entrypoint") or []) + list(
        args if args is not None else config.get("Cmd") or [])


def env_of(config: dict[str, Any]) -> dict[str, str]:
    out = {}
    for item in config.get("Env") or []:
        key, _, val = str(item).partition("=")
        if key:
            out[key] = val
    return out
