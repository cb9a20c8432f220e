"""Removing images: image rm (refused while a pod uses it) and image prune."""

from __future__ import annotations

import os

from nspod.errors import ImageInUse, NoSuchImage
from nspod.image import ImageStore, clean_tmp, remove_tree


def remove(store: ImageStore, ref: str, force: bool = False) -> list[str]:
    """image rm: untags a name an image has others of; else removes the image.

    Refused while a pod uses it, unless force. Returns what was done, as
    lines ("untagged NAME", "deleted ID").
    """
    with store.lock():
        image_id, name = store.lookup(ref)
        if image_id is None:
            raise NoSuchImage(f"image {ref}: no such image")
        names = store.names_of(image_id)
        if name in names and len(names) > 1:
            store.drop_name(name)
            return [f"untagged {name}"]
        return _delete(store, image_id, names, force)


def _delete(store: ImageStore, image_id: str, names: list[str], force: bool) -> list[str]:
    """Removes an image and its names (the store's lock held)."""
    with store.image_lock(image_id, shared=False):
        users = store.users(image_id)
        if users and not force:
            pods = ", ".join(os.path.basename(u) for u in users)
            raise ImageInUse(f"image rm {image_id[:12]}: in use by pod {pods} "
                             "(remove the pods first, or image rm -f)")
        # names first, then the directory out of sight, then its files: killed at
        # any point, what is left is an image without names (prune takes it) or
        # a directory in tmp/ (the next pull or prune takes it)
        for n in names:
            store.drop_name(n)
        gone = os.path.join(store.tmp, f"rm-{image_id}-{os.urandom(4).hex()}")
        os.rename(store.image_dir(image_id), gone)
    remove_tree(gone)
    return [f"untagged {n}" for n in names] + [f"deleted {image_id}"]


def prune(store: ImageStore, every: bool = False) -> list[str]:
    """Removes images no name points to (every: all images no pod uses), and what
    killed pulls left in tmp/."""
    out = []
    with store.lock():
        clean_tmp(store)
        named = set(store.name_map().values())
        for image_id in store.ids():
            if (every or image_id not in named) and not store.users(image_id):
                out += _delete(store, image_id, store.names_of(image_id), False)
    return [line for line in out if line.startswith("deleted")]
