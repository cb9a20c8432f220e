"""image import: a one-layer image of a root filesystem tarball (`docker export`,
`tar -C root -c .`), made as an OCI layout and installed as a pull is (imagefetch).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from nspod import imagenames
from nspod.errors import NspodError, os_reason
from nspod.imagefetch import REF_ANNOTATION, install, staging

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nspod.image import Image, ImageStore

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def _layer_from(tarball: str, blobs: str) -> tuple[str, str, int, str]:
    """Copies a root filesystem tarball in as a layer blob.

    Returns (layer digest, diff id, size, media type); gzip stays gzip, xz
    and bzip2 become plain tar (umoci reads tar and gzip).
    """
    import bz2
    import gzip
    import lzma

    with open(tarball, "rb") as f:
        magic = f.read(6)
    tmp = os.path.join(blobs, ".layer")
    if magic.startswith(b"\x1f\x8b"):
        opener: Any = gzip.open
        media = "application/vnd.oci.image.layer.v1.tar+gzip"
    else:
        opener = (lzma.open if magic.startswith(b"\xfd7zXZ") else
                  bz2.open if magic.startswith(b"BZh") else open)
        media = "application/vnd.oci.image.layer.v1.tar"
    diff = hashlib.sha256()
    digest = hashlib.sha256()
    size = 0
    with opener(tarball, "rb") as src, open(tmp, "wb") as out:
        raw = open(tarball, "rb") if media.endswith("gzip") else None
        try:
            while chunk := src.read(1 << 20):
                diff.update(chunk)
                if raw is None:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            if raw is not None:
                while chunk := raw.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        finally:
            if raw is not None:
                raw.close()
    os.rename(tmp, os.path.join(blobs, digest.hexdigest()))
    return "sha256:" + digest.hexdigest(), "sha256:" + diff.hexdigest(), size, media


def _put_json(blobs: str, obj: dict[str, Any]) -> tuple[str, int]:
    data = json.dumps(obj, separators=(",", ":")).encode()
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, hexd), "wb") as f:
        f.write(data)
    return "sha256:" + hexd, len(data)


def import_tarball(store: ImageStore, tarball: str, name: str) -> Image:
    """A one-layer image of a root filesystem tarball (`docker export`, `tar -C root -c .`)."""
    full = imagenames.normalize(name if "/" in name or "." in name else f"localhost/{name}")
    if not os.path.isfile(tarball):
        raise NspodError(f"image import {tarball}: no such file")
    with staging(store) as stage:
        layout = os.path.join(stage, "layout")
        blobs = os.path.join(layout, "blobs", "sha256")
        os.makedirs(blobs)
        try:
            digest, diff_id, size, media = _layer_from(tarball, blobs)
        except (OSError, EOFError, ValueError) as e:
            why = os_reason(e) if isinstance(e, OSError) and e.strerror else str(e)
            raise NspodError(f"image import {tarball}: {why}") from None
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        config = {"created": now, "architecture": _GOARCH.get(os.uname().machine,
                                                              os.uname().machine),
                  "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created": now, "created_by": f"nspod image import {tarball}"}]}
        cdigest, csize = _put_json(blobs, config)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": cdigest, "size": csize},
                    "layers": [{"mediaType": media, "digest": digest, "size": size}]}
        mdigest, msize = _put_json(blobs, manifest)
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [
                {"mediaType": manifest["mediaType"], "digest": mdigest, "size": msize,
                 "annotations": {REF_ANNOTATION: "img"}}]}, f)
        return install(store, stage, [full], f"import:{os.path.abspath(tarball)}")
