"""Getting images into the store: pull (skopeo), load (docker/OCI archives); import
(a root filesystem tarball) is in imageimport.py, on the same road.

Every way in goes the same road: skopeo copies the image into an OCI layout
in a private staging directory under images/tmp/, umoci unpacks it there
(`umoci raw unpack`: whiteouts, hard links, device nodes, xattrs, and no
path of a hostile layer escaping the root), and only a whole image is
renamed into place, under the store's lock, before its names point at it.
A pull that dies half way leaves a staging directory that no verb shows and
the next pull or `image prune` removes (its flock is free then); skopeo and
umoci die with nspod (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time

from nspod import image, imagenames
from nspod.errors import NspodError, UsageError
from nspod.image import Image, ImageStore
from nspod.poddir import checkpoint  # NSPOD_KILL_AT=image-copied|image-unpacked

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

REF_ANNOTATION = "org.opencontainers.image.ref.name"


def _die_with_parent(parent: int) -> None:
    import _prctl  # python-prctl's C module

    _prctl.prctl(_prctl.PR_SET_PDEATHSIG, 9)
    if os.getppid() != parent:  # nspod died before the line above
        os._exit(1)


def _tool(what: str, argv: list[str]) -> bytes:
    """Runs skopeo or umoci and returns its output; NspodError with its own message
    when it fails."""
    parent = os.getpid()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              preexec_fn=lambda: _die_with_parent(parent))
    except FileNotFoundError:
        raise NspodError(f"{what}: {argv[0]} is not installed (make setup)") from None
    if proc.returncode != 0:
        why = _reason(proc.stderr.decode(errors="replace"))
        raise NspodError(f"{what}: {why or f'{argv[0]} failed'}")
    return proc.stdout


def _reason(stderr: str) -> str:
    """skopeo's `level=fatal msg="..."` or the last line, on one line."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    if 'msg="' in last:
        last = last.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return last.strip()[:500]


# -- staging ----------------------------------------------------------------------------


@contextlib.contextmanager
def staging(store: ImageStore) -> Iterator[str]:
    """A private directory under tmp/, flocked while we work in it, removed after."""
    store.ensure()
    with store.lock():
        image.clean_tmp(store)
        path = os.path.join(store.tmp, f"{time.strftime('%Y%m%d%H%M%S')}-{os.urandom(4).hex()}")
        os.mkdir(path, 0o700)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError, NspodError):
            image.remove_tree(path)
        os.close(fd)


def _blob(layout: str, digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or set(hexd) - set("0123456789abcdef"):
        raise NspodError(f"image: unsupported digest {digest[:80]!r}")
    with open(os.path.join(layout, "blobs", "sha256", hexd), "rb") as f:
        return f.read()


def _read_layout(layout: str) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """(manifest digest, manifest, config, image id) of the one image in an OCI layout."""
    index = json.loads(_blob_index(layout))
    desc = index["manifests"][0]
    manifest = json.loads(_blob(layout, desc["digest"]))
    config_digest = manifest["config"]["digest"]
    config = json.loads(_blob(layout, config_digest))
    return desc["digest"], manifest, config, config_digest.partition(":")[2]


def _blob_index(layout: str) -> bytes:
    with open(os.path.join(layout, "index.json"), "rb") as f:
        return f.read()


def _tree_size(top: str) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(top):
        for n in dirs + files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, n)).st_size
    return total


def install(store: ImageStore, stage: str, names: list[str], source: str) -> Image:
    """Unpacks the staged layout (unless the image is already stored) and commits it."""
    layout = os.path.join(stage, "layout")
    digest, manifest, config, image_id = _read_layout(layout)
    with store.lock():
        if os.path.exists(os.path.join(store.image_dir(image_id), "image.json")):
            for n in names:
                store.set_name(n, image_id)
            return store.load(image_id)
    new = os.path.join(stage, "image")
    os.mkdir(new, 0o700)
    rootfs = os.path.join(new, "rootfs")
    _tool(f"unpack {source}", ["umoci", "raw", "unpack", "--image", f"{layout}:img", rootfs])
    _mount_points(rootfs)
    checkpoint("image-unpacked")
    rec = {
        "id": image_id,
        "digest": digest,
        "source": source,
        "created": config.get("created"),
        "stored": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "size": _tree_size(rootfs),
        "architecture": config.get("architecture"),
        "os": config.get("os"),
        "layers": [{"digest": layer["digest"], "size": layer.get("size"),
                    "mediaType": layer.get("mediaType")} for layer in manifest.get("layers", [])],
        "config": config,
    }
    with open(os.path.join(new, "image.json"), "w") as f:
        json.dump(rec, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    with store.lock():
        target = store.image_dir(image_id)
        if not os.path.exists(os.path.join(target, "image.json")):
            if os.path.lexists(target):  # an rm that died half way: not an image
                image.remove_tree(target)
            os.rename(new, target)
        for n in names:
            store.set_name(n, image_id)
    return store.load(image_id)


# What every member's root gets mounted over (rootfs.enter): made once in the
# image, as docker's init layer does, so a join writes none of it into its
# upper layer.
MOUNT_DIRS = ("proc", "sys", "dev", "etc", "tmp", "run")
MOUNT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


def _mount_points(rootfs: str) -> None:
    """Makes the mount points members need where the image lacks them, inside it
    (a symlink in the image is followed as if rootfs were /)."""
    from nspod.rootfs import resolve_in

    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path, kind in [(d, "dir") for d in MOUNT_DIRS] + [(f, "file") for f in MOUNT_FILES]:
            with contextlib.suppress(OSError):  # a file where a dir should be: enter says so
                os.close(resolve_in(root_fd, path, create=kind))
    finally:
        os.close(root_fd)


def _copy(stage: str, source: str, what: str, tls_verify: bool = True) -> None:
    argv = ["skopeo", "copy", "--quiet", "--retry-times", "2"]
    if not tls_verify:
        argv.append("--src-tls-verify=false")
    _tool(what, [*argv, source, f"oci:{os.path.join(stage, 'layout')}:img"])
    checkpoint("image-copied")


# -- pull -------------------------------------------------------------------------------


def _oci_dir_name(path: str, tag: str) -> str:
    base = "".join(ch if ch.isalnum() else "-" for ch in os.path.basename(path.rstrip("/")))
    return imagenames.normalize(f"localhost/{base.lower().strip('-') or 'image'}:{tag or 'latest'}")


def source_of(ref: str) -> tuple[str, str]:
    """(what skopeo copies from, the name it gets here) for pull's REF."""
    if ref.startswith("docker://"):
        full = imagenames.normalize(ref[len("docker://"):])
        return "docker://" + full, full
    if ref.startswith("oci:"):
        path, _, tag = ref[len("oci:"):].partition(":")
        return ref, _oci_dir_name(path, tag)
    if ref.startswith(("docker-archive:", "oci-archive:")):
        raise UsageError(f"image pull {ref}: archives come in with nspod image load FILE")
    if ref.split(":", 1)[0] in ("containers-storage", "docker-daemon", "dir", "ostree", "sif"):
        raise UsageError(f"image pull {ref}: transport not supported (docker://, oci:)")
    full = imagenames.normalize(ref)
    return "docker://" + full, full


def pull(store: ImageStore, ref: str, tls_verify: bool = True) -> Image:
    """Fetches ref (docker://, a name, oci:DIR[:TAG]) and stores it under its name.

    Pulls of one name wait for each other; pulls of different names that are
    the same image unpack it once (the second finds it committed). A pull
    of a name already stored asks the registry for the image's config first:
    its digest is the image's id, and an unchanged image is not downloaded
    again (as podman skips the layers it has), so it costs two small
    requests. A new name goes straight to the copy (the check would cost a
    first pull one more skopeo, ~35 ms).
    """
    source, name = source_of(ref)
    with store.name_lock(name):
        stored = os.path.exists(os.path.join(store.names, imagenames.key(name)))
        if stored and source.startswith("docker://"):
            image_id = _remote_id(source, f"pull {ref}", tls_verify)
            with store.lock():
                if os.path.exists(os.path.join(store.image_dir(image_id), "image.json")):
                    store.set_name(name, image_id)
                    return store.load(image_id)
        with staging(store) as stage:
            _copy(stage, source, f"pull {ref}", tls_verify)
            return install(store, stage, [name], source)


def _remote_id(source: str, what: str, tls_verify: bool) -> str:
    """The id the image at source would have here: the sha256 of its config, for
    this machine's platform (skopeo picks it from a multi-platform index)."""
    from nspod import lean

    argv = ["skopeo", "inspect", "--config", "--raw", "--retry-times", "2"]
    if not tls_verify:
        argv.append("--tls-verify=false")
    return lean.sha256_hex(_tool(what, [*argv, source]))


# -- load -------------------------------------------------------------------------------


def _archive_entries(path: str) -> list[tuple[str, list[str]]]:
    """[(skopeo source, names)] of every image in a docker or OCI archive."""
    import tarfile

    try:
        tar = tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise NspodError(f"image load {path}: no such file") from None
    except IsADirectoryError:
        raise NspodError(f"image load {path}: a directory (pull oci:DIR for an OCI layout)")\
            from None
    except (tarfile.TarError, OSError, EOFError):
        raise NspodError(f"image load {path}: not a tar archive") from None
    with tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        if "manifest.json" in members:  # docker save / podman save (docker-archive)
            manifest = _json_member(tar, members["manifest.json"], path)
            return [(f"docker-archive:{path}:@{i}",
                     [imagenames.normalize(t) for t in entry.get("RepoTags") or []])
                     for i, entry in enumerate(manifest)]
        if "index.json" in members and "oci-layout" in members:  # podman save --format oci-archive
            index = _json_member(tar, members["index.json"], path)
            out = []
            manifests = index.get("manifests", [])
            for desc in manifests:
                ref = (desc.get("annotations") or {}).get(REF_ANNOTATION, "")
                if not ref and len(manifests) > 1:
                    continue  # skopeo can name it only by its ref
                src = f"oci-archive:{path}:{ref}" if ref else f"oci-archive:{path}"
                out.append((src, [_oci_ref_name(ref, path)] if ref else []))
            return out
    raise NspodError(f"image load {path}: neither a docker nor an OCI archive "
                     "(no manifest.json, no index.json)")


def _json_member(tar: Any, member: Any, path: str) -> Any:
    f = tar.extractfile(member)
    try:
        return json.loads(f.read())
    except ValueError as e:
        raise NspodError(f"image load {path}: {member.name}: {e}") from None


def _oci_ref_name(ref: str, path: str) -> str:
    """An OCI archive's ref.name annotation: a full name (podman), or only a tag."""
    if "/" in ref or ":" in ref:
        return imagenames.normalize(ref)
    stem = os.path.basename(path).split(".", 1)[0]
    return _oci_dir_name(stem, ref)


def load(store: ImageStore, path: str) -> list[tuple[Image, list[str]]]:
    """Stores every image of a `docker save` / `podman save` archive (either format,
    plain or compressed: `docker save | gzip` is common, and skopeo reads only tar)."""
    path = os.path.abspath(path)
    with staging(store) as unpacked:
        opener = _decompressor(path)
        if opener is not None:
            plain = os.path.join(unpacked, os.path.basename(path).rsplit(".", 1)[0])
            try:
                with opener(path, "rb") as src, open(plain, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            except (OSError, EOFError, ValueError):
                raise NspodError(f"image load {path}: not a tar archive") from None
        else:
            plain = path
        entries = _archive_entries(plain)
        if not entries:
            raise NspodError(f"image load {path}: the archive holds no image")
        out: list[tuple[Image, list[str]]] = []
        for source, names in entries:
            with staging(store) as stage:
                _copy(stage, source, f"image load {path}")
                out.append((install(store, stage, names, source), names))
        return out


def _decompressor(path: str) -> Any:
    """gzip.open, lzma.open or bz2.open for a compressed file, else None."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise NspodError(f"image load {path}: no such file") from None
    except IsADirectoryError:
        raise NspodError(f"image load {path}: a directory (pull oci:DIR for an OCI layout)")\
            from None
    if magic.startswith(b"\x1f\x8b"):
        import gzip

        return gzip.open
    if magic.startswith(b"\xfd7zXZ"):
        import lzma

        return lzma.open
    if magic.startswith(b"BZh"):
        import bz2

        return bz2.open
    return None
