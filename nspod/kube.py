"""`nspod kube VERB ...`: the kube domain's entry in cli.TABLES.

One verb whose command is a kube verb (play, down, generate); their table,
handlers and PyYAML (kubeverbs) load only when it runs, so join pays nothing.
"""

from __future__ import annotations

from nspod.args import Parsed, Verb


def run(a: Parsed, root: str | None) -> int:
    from nspod import kubeverbs

    return kubeverbs.run(list(a.command), root)


VERBS = (
    Verb("kube", "Kubernetes manifests: play FILE, down FILE, generate POD (nspod kube --help)",
         (), (), command="VERB [ARG...]",
         details="VERB: play, down, generate (nspod kube VERB --help).\n"
         "exit codes: 0 success; 2 bad usage or a malformed manifest; 125 nspod failed",
         run=run),
)
