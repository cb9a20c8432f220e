"""The kube verbs' own table and their handlers: `nspod kube play|down|generate`.

Loaded only when a kube verb runs; kube is the one entry of cli's table. Part
of the CLI layer, so it prints: warnings one line each, to stderr, first.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from nspod.args import Opt, Parsed, Verb, parse_sub, usage
from nspod.errors import NspodError, UsageError, os_reason
from nspod.options import boolean

EXIT_CODES = """\
exit codes: 0 success; 2 bad usage or a malformed manifest (the field's path is
named); 125 nspod failed (nothing of the play is left); an init container's own
status when it fails"""


def _image_dir(value: str) -> tuple[str, str]:
    ref, eq, path = value.rpartition("=")
    if not eq or not ref or not path.startswith("/"):
        raise ValueError(f"{value!r} is not IMAGE=/DIR")
    return ref, path


def _seconds(value: str) -> float:
    try:
        secs = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if secs < 0:
        raise ValueError(f"{value!r} is negative")
    return secs


KUBE_VERBS = {
    v.name: v
    for v in (
        Verb(
            "play",
            "Create the pods of a Kubernetes manifest (Pod, Deployment template) and start "
            "their containers.",
            ("FILE",),
            (Opt(("--rootfs",), "rootfs", "run containers of image IMAGE in the directory DIR",
                 "IMAGE=DIR", True, convert=_image_dir),
             Opt(("--tls-verify",), "tls_verify", "pull over HTTPS with a valid certificate "
                 "(default true; false for a plain-HTTP registry)", "BOOL", default=True,
                 convert=boolean)),
            details="FILE is a YAML file, or - for stdin. Prints each pod's name.\n"
            "Supported: metadata.name; containers' image, command, args, env (value),\n"
            "workingDir, ports (a hostPort is published), volumeMounts, resources.limits\n"
            "(summed into the pod's cgroup), securityContext; initContainers (run in\n"
            "order to completion first); volumes hostPath, emptyDir (medium Memory: a\n"
            "tmpfs), configMap (from a ConfigMap in FILE); hostNetwork, hostname,\n"
            "restartPolicy Never. Any other field: one warning naming it.\n"
            "A container runs in its image, from nspod's store (pulled when missing, as\n"
            "imagePullPolicy says; see nspod image); or in the directory --rootfs maps\n"
            "its image to, or the one its rootfs.nspod.io/CONTAINER annotation names\n"
            "(/ for the host's files, as for a container with no image).\n"
            + EXIT_CODES,
        ),
        Verb(
            "down",
            "Remove the pods a manifest describes (those kube play made).",
            ("FILE",),
            (Opt(("-t", "--time"), "time", "grace period in seconds (default 10)", "SECONDS",
                 default=10.0, convert=_seconds),),
            details="FILE is a YAML file, or - for stdin. Prints each removed pod's name.\n"
            + EXIT_CODES,
        ),
        Verb(
            "generate",
            "Print a pod as a Kubernetes Pod manifest (with the ConfigMaps it uses).",
            ("POD",),
            (),
            details="kube play turns the output back into the same pod.\n" + EXIT_CODES,
        ),
    )
}

SUMMARY = "Kubernetes manifests: play FILE, down FILE, generate POD"


def _help() -> str:
    verbs = "\n".join(f"  {v.name:<10} {v.summary}" for v in KUBE_VERBS.values())
    return (f"usage: nspod kube VERB [OPTIONS] ...\n\n{SUMMARY}.\n\nverbs:\n{verbs}\n\n"
            "Run 'nspod kube VERB --help' for a verb's options.")


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise NspodError(f"{path}: {os_reason(e)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def _manifest(path: str) -> Any:
    from nspod import kubeparse

    source = "stdin" if path == "-" else path
    manifest = kubeparse.load(_read(path), source)
    for w in manifest.warnings:
        print(f"nspod: warning: {w}", file=sys.stderr)
    return manifest


def _root(root: str | None) -> str:
    return root or os.environ.get("NSPOD_ROOT") or "/run/nspod"


def cmd_play(a: Parsed, root: str | None) -> int:
    from nspod import kubeplay

    manifest = _manifest(a.file)
    if not manifest.pods:
        raise UsageError(f"kube play {a.file}: no Pod or Deployment in it")
    for name in kubeplay.play(_root(root), manifest, dict(a.rootfs), a.tls_verify):
        print(name)
    return 0


def cmd_down(a: Parsed, root: str | None) -> int:
    from nspod import kubeplay

    removed, warnings = kubeplay.down(_root(root), _manifest(a.file), a.time)
    for w in warnings:
        print(f"nspod: warning: kube down: {w}", file=sys.stderr)
    for name in removed:
        print(name)
    return 0


def cmd_generate(a: Parsed, root: str | None) -> int:
    from nspod import kubeplay

    sys.stdout.write(kubeplay.generate(_root(root), a.pod))
    return 0


COMMANDS = {"play": cmd_play, "down": cmd_down, "generate": cmd_generate}


def run(args: list[str], root: str | None) -> int:
    """`nspod kube ARGS...`; NspodError goes up to cli, which prints it."""
    if not args or args[0] in ("-h", "--help"):
        print(_help(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    name, verb, parsed = parse_sub("kube", KUBE_VERBS, args)
    if parsed.help:
        print(usage(verb).replace("nspod ", "nspod kube ", 1))
        return 0
    return COMMANDS[name](parsed, root)
