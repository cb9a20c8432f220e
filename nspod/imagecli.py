"""`nspod image VERB`: the image verbs' table, parse, one call into image, render."""

from __future__ import annotations

import json
import sys
import time

from nspod import image
from nspod.args import Opt, Parsed, Verb, parse, usage
from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

CODES = "exit codes: 0 success; 2 bad usage; 125 nspod failed (no such image, pull failed, ...)"
STORAGE = ("Images live under $NSPOD_STORAGE/images (default /var/lib/nspod/images), unpacked\n"
           "once each; they survive a reboot.")


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not true or false")


VERBS = {
    v.name: v
    for v in (
        Verb("pull", "Fetch an image from a registry (or an OCI layout) and unpack it.",
             ("REF",),
             (Opt(("--tls-verify",), "tls_verify", "require HTTPS and a valid certificate "
                  "(default true; false for a plain-HTTP registry)", "BOOL", default=True,
                  convert=_bool),
              Opt(("-q", "--quiet"), "quiet", "print only the image id")),
             details="REF: NAME[:TAG|@DIGEST] (a short name is looked for in $NSPOD_REGISTRY,\n"
             "default docker.io), docker://NAME, oci:DIR[:TAG]. Credentials come from the\n"
             "usual auth.json / ~/.docker/config.json (skopeo login).\n" + STORAGE + "\n"
             + CODES),
        Verb("load", "Store the images of a docker save / podman save archive (either format).",
             ("FILE",), (), details=CODES),
        Verb("import", "Make an image of a root filesystem tarball (docker export, tar -c).",
             ("TARBALL", "NAME"), (), details=CODES),
        Verb("ls", "List stored images: name, tag, id, created, size.", (),
             (Opt(("-q", "--quiet"), "quiet", "print ids only"),
              Opt(("--json",), "json", "print JSON")), details=CODES),
        Verb("inspect", "Print images' config, layers and digest as JSON.", ("REF...",), (),
             details=CODES),
        Verb("rm", "Remove images (a name the image has others of is only untagged).",
             ("REF...",), (Opt(("-f", "--force"), "force", "remove even while pods use it"),),
             details="Refused while a pod that ran the image exists, unless -f.\n" + CODES),
        Verb("prune", "Remove images no name points to, and what failed pulls left.", (),
             (Opt(("-a", "--all"), "all", "every image no pod uses"),), details=CODES),
    )
}


def cmd_pull(a: Parsed, store: image.ImageStore) -> int:
    from nspod import imagefetch

    img = imagefetch.pull(store, a.ref, tls_verify=a.tls_verify)
    print(img.id if a.quiet else f"{', '.join(store.names_of(img.id))} {img.id}")
    return 0


def cmd_load(a: Parsed, store: image.ImageStore) -> int:
    from nspod import imagefetch

    for img, names in imagefetch.load(store, a.file):
        print(f"loaded {', '.join(names) or '<none>'} {img.id}")
    return 0


def cmd_import(a: Parsed, store: image.ImageStore) -> int:
    from nspod import imagefetch

    print(imagefetch.import_tarball(store, a.tarball, a.name).id)
    return 0


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def _age(created: str | None) -> str:
    if not created:
        return "-"
    try:
        t = time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return created
    secs = max(int(time.time() - t), 0)
    for unit, n in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= n:
            return f"{secs // n} {unit} ago"
    return f"{secs} seconds ago"


def listing(store: image.ImageStore) -> list[dict[str, object]]:
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


def cmd_ls(a: Parsed, store: image.ImageStore) -> int:
    images = listing(store)
    if a.quiet:
        for i in images:
            print(i["id"])
        return 0
    if a.json:
        print(json.dumps(images, indent=2))
        return 0
    rows = [("NAME", "TAG", "ID", "CREATED", "SIZE")]
    for i in images:
        for n in i["names"] or ["<none>:<none>"]:  # type: ignore[attr-defined]
            repo, tag = image.split_name(n) if n != "<none>:<none>" else ("<none>", "<none>")
            rows.append((repo, tag, str(i["id"])[:12], _age(i["created"]),  # type: ignore[arg-type]
                         _size(int(i["size"]))))  # type: ignore[call-overload]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_inspect(a: Parsed, store: image.ImageStore) -> int:
    out = []
    for ref in a.ref:
        img = store.get(ref)
        out.append({**img.rec, "names": store.names_of(img.id), "root": img.root,
                    "used_by": store.users(img.id)})
    print(json.dumps(out, indent=2))
    return 0


def cmd_rm(a: Parsed, store: image.ImageStore) -> int:
    for ref in a.ref:
        for line in image.remove(store, ref, a.force):
            print(line)
    return 0


def cmd_prune(a: Parsed, store: image.ImageStore) -> int:
    for line in image.prune(store, a.all):
        print(line)
    return 0


COMMANDS: dict[str, Callable[[Parsed, image.ImageStore], int]] = {
    "pull": cmd_pull, "load": cmd_load, "import": cmd_import, "ls": cmd_ls,
    "inspect": cmd_inspect, "rm": cmd_rm, "prune": cmd_prune,
}
SUMMARY = "Pull, load, import, list, inspect and remove images (nspod image --help)."


def help_text() -> str:
    verbs = "\n".join(f"  {v.name:<10} {v.summary}" for v in VERBS.values())
    return (f"usage: nspod image VERB [OPTIONS] ...\n\n{SUMMARY}\n\nverbs:\n{verbs}\n\n"
            f"{STORAGE}\nRun 'nspod image VERB --help' for a verb's options.")


def main(args: list[str], check_root: Callable[[str], None]) -> int:
    """nspod image ARGS; check_root(verb) raises when the caller is not root."""
    if not args or args[0] in ("-h", "--help"):
        print(help_text(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    name = args.pop(0)
    verb = VERBS.get(name)
    if verb is None:
        raise UsageError(f"image: unknown verb {name!r} (see nspod image --help)")
    parsed = parse(verb, args)
    if parsed.help:
        print(usage(verb).replace("nspod ", "nspod image ", 1))
        return 0
    check_root(f"image {name}")
    return COMMANDS[name](parsed, image.ImageStore())
