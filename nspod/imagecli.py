"""`nspod image VERB ...`: the image domain's entry in cli.TABLES.

One verb whose command is an image verb; its table and handlers
(imageverbs) load only when it runs, so join's start-up pays nothing here.
"""

from __future__ import annotations

from nspod.args import Parsed, Verb


def run(a: Parsed, root: str | None) -> int:
    from nspod import imageverbs

    return imageverbs.run(list(a.command))


VERBS = (
    Verb("image", "Pull, load, import, list, inspect and remove images (nspod image --help)",
         (), (), command="VERB [ARG...]",
         details="VERB: pull, load, import, ls, inspect, rm, prune (nspod image VERB --help).\n"
         "Images live under $NSPOD_STORAGE/images (default /var/lib/nspod/images).\n"
         "exit codes: 0 success; 2 bad usage; 125 nspod failed (no such image, ...)",
         run=run),
)
