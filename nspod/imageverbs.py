"""The image verbs' own table and their handlers: `nspod image VERB ...`.

Loaded only when an image verb runs; imagecli is the one entry of cli's table.
"""

from __future__ import annotations

import sys

from nspod.args import Opt, Parsed, Verb, parse_sub, usage
from nspod.options import boolean

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from nspod.image import ImageStore

CODES = "exit codes: 0 success; 2 bad usage; 125 nspod failed (no such image, pull failed, ...)"
STORAGE = ("Images live under $NSPOD_STORAGE/images (default /var/lib/nspod/images), unpacked\n"
           "once each; they survive a reboot.")


IMAGE_VERBS = {  # named "image VERB": usage and errors say `nspod image pull ...`
    v.name.split()[1]: v
    for v in (
        Verb("image pull", "Fetch an image from a registry (or an OCI layout) and unpack it.",
             ("REF",),
             (Opt(("--tls-verify",), "tls_verify", "require HTTPS and a valid certificate "
                  "(default true; false for a plain-HTTP registry)", "BOOL", default=True,
                  convert=boolean),
              Opt(("-q", "--quiet"), "quiet", "print only the image id")),
             details="REF: NAME[:TAG|@DIGEST] (a short name is looked for in $NSPOD_REGISTRY,\n"
             "default docker.io), docker://NAME, oci:DIR[:TAG]. Credentials come from the\n"
             "usual auth.json / ~/.docker/config.json (skopeo login).\n" + STORAGE + "\n"
             + CODES),
        Verb("image load", "Store the images of a docker save / podman save archive (either "
             "format).",
             ("FILE",), (), details=CODES),
        Verb("image import", "Make an image of a root filesystem tarball (docker export, tar -c).",
             ("TARBALL", "NAME"), (), details=CODES),
        Verb("image ls", "List stored images: name, tag, id, created, size.", (),
             (Opt(("-q", "--quiet"), "quiet", "print ids only"),
              Opt(("--json",), "json", "print JSON")), details=CODES),
        Verb("image inspect", "Print images' config, layers and digest as JSON.", ("REF...",), (),
             details=CODES),
        Verb("image rm", "Remove images (a name the image has others of is only untagged).",
             ("REF...",), (Opt(("-f", "--force"), "force", "remove even while pods use it"),),
             details="Refused while a pod that ran the image exists, unless -f.\n" + CODES),
        Verb("image prune", "Remove images no name points to, and what failed pulls left.", (),
             (Opt(("-a", "--all"), "all", "every image no pod uses"),), details=CODES),
    )
}


def cmd_pull(a: Parsed, store: ImageStore) -> int:
    from nspod import imagefetch

    img = imagefetch.pull(store, a.ref, tls_verify=a.tls_verify)
    print(img.id if a.quiet else f"{', '.join(store.names_of(img.id))} {img.id}")
    return 0


def cmd_load(a: Parsed, store: ImageStore) -> int:
    from nspod import imagefetch

    for img, names in imagefetch.load(store, a.file):
        print(f"loaded {', '.join(names) or '<none>'} {img.id}")
    return 0


def cmd_import(a: Parsed, store: ImageStore) -> int:
    from nspod import imageimport

    print(imageimport.import_tarball(store, a.tarball, a.name).id)
    return 0


def _age(created: str | None) -> str:
    """An image's creation (RFC 3339, UTC) as render.age shows ages: 3d, 5h."""
    import calendar
    import time

    from nspod import render

    if not created:
        return "-"
    try:
        return render.age(calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return created


def listing(store: ImageStore) -> list[dict[str, object]]:
    """Every stored image: id, names, created, size, digest."""
    names: dict[str, list[str]] = {}
    for n, i in store.name_map().items():
        names.setdefault(i, []).append(n)
    out = []
    for image_id in store.ids():
        img = store.load(image_id)
        out.append({"id": image_id, "names": sorted(names.get(image_id, [])),
                    "created": img.rec.get("created"), "size": img.rec.get("size", 0),
                    "digest": img.rec.get("digest")})
    return out


def cmd_ls(a: Parsed, store: ImageStore) -> int:
    from nspod import imagenames, render

    images = listing(store)
    if a.quiet:
        for i in images:
            print(i["id"])
        return 0
    if a.json:
        print(render.to_json(images))
        return 0
    rows = [("NAME", "TAG", "ID", "CREATED", "SIZE")]
    for i in images:
        names: list[str] = i["names"] or [""]  # type: ignore[assignment]
        for n in names:
            repo, tag = imagenames.split_name(n) if n else ("<none>", "<none>")
            rows.append((repo, tag, str(i["id"])[:12], _age(i["created"]),  # type: ignore[arg-type]
                         render.size(i["size"])))  # type: ignore[arg-type]
    print(render.table(rows))
    return 0


def cmd_inspect(a: Parsed, store: ImageStore) -> int:
    from nspod import render

    out = []
    for ref in a.ref:
        img = store.get(ref)
        out.append({**img.rec, "names": store.names_of(img.id), "root": img.root,
                    "used_by": store.users(img.id)})
    print(render.to_json(out))
    return 0


def cmd_rm(a: Parsed, store: ImageStore) -> int:
    from nspod import imagerm

    for ref in a.ref:
        for line in imagerm.remove(store, ref, a.force):
            print(line)
    return 0


def cmd_prune(a: Parsed, store: ImageStore) -> int:
    from nspod import imagerm

    for line in imagerm.prune(store, a.all):
        print(line)
    return 0


COMMANDS: dict[str, Callable[[Parsed, ImageStore], int]] = {
    "pull": cmd_pull, "load": cmd_load, "import": cmd_import, "ls": cmd_ls,
    "inspect": cmd_inspect, "rm": cmd_rm, "prune": cmd_prune,
}
SUMMARY = "Pull, load, import, list, inspect and remove images."


def help_text() -> str:
    verbs = "\n".join(f"  {n:<10} {v.summary}" for n, v in IMAGE_VERBS.items())
    return (f"usage: nspod image VERB [OPTIONS] ...\n\n{SUMMARY}\n\nverbs:\n{verbs}\n\n"
            f"{STORAGE}\nRun 'nspod image VERB --help' for a verb's options.\n{CODES}")


def run(args: list[str]) -> int:
    """nspod image VERB ...: the image verb and its arguments."""
    if not args:
        print(help_text(), file=sys.stderr)
        return 2
    name, verb, parsed = parse_sub("image", IMAGE_VERBS, args)
    if parsed.help:
        print(usage(verb))
        return 0
    from nspod.image import ImageStore

    return COMMANDS[name](parsed, ImageStore())

