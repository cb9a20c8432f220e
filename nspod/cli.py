"""nspod's command line: find the verb, parse, run its handler, and turn what
went wrong into one line and an exit code. Only the CLI layer prints.

The verbs come from the tables in TABLES: a domain adds its own module with
a VERBS tuple (see verbs.py) and is named here.
"""

from __future__ import annotations

import os
import sys

from nspod import __version__, verbs
from nspod.args import parse, usage
from nspod.errors import USAGE, NotRoot, NspodError, UsageError
from nspod.handlers import DEFAULT_ROOT

TABLES = (verbs.VERBS,)
VERBS = {v.name: v for table in TABLES for v in table}

GLOBAL_HELP = """\
usage: nspod [--root DIR] [--debug] VERB [OPTIONS] ...

Pods on raw Linux namespaces: a pause process is PID 1 of each pod; the
commands you join share its network, IPC, UTS and PID namespaces.

verbs:
{verbs}

global options:
  --root DIR      state directory (default $NSPOD_ROOT or {root})
  --debug         show tracebacks on errors
  --version       print the version and exit
  -h, --help      show this help and exit

exit codes: 0 success; 2 bad usage; 125 nspod failed; join passes its
command's status through (see nspod join --help).
Run 'nspod VERB --help' for a verb's options and exit codes."""


def _global_help() -> str:
    listing = "\n".join(f"  {v.name:<10} {v.summary}" for v in VERBS.values())
    return GLOBAL_HELP.format(verbs=listing, root=DEFAULT_ROOT)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = False
    root: str | None = None
    try:
        while args and args[0].startswith("-"):
            opt = args.pop(0)
            if opt == "--debug":
                debug = True
            elif opt in ("-h", "--help"):
                print(_global_help())
                return 0
            elif opt == "--version":
                print(f"nspod {__version__}")
                return 0
            elif opt == "--root" and args:
                root = args.pop(0)
            elif opt.startswith("--root="):
                root = opt[len("--root="):]
            else:
                raise UsageError(f"unknown option {opt} (see nspod --help)")
        if not args:
            print(_global_help(), file=sys.stderr)
            return USAGE
        name = args.pop(0)
        verb = VERBS.get(name)
        if verb is None:
            raise UsageError(f"unknown verb {name!r} (see nspod --help)")
        parsed = parse(verb, args)
        if parsed.help:
            print(usage(verb))
            return 0
        if os.geteuid() != 0:
            # every verb reads or changes namespaces, mounts, cgroups or the
            # state root, which is root's (0711): the one root check
            raise NotRoot(f"{name}: must be run as root (try sudo)")
        return int(verb.run(parsed, root))
    except NspodError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"nspod: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        if debug:
            raise
        what = f"{e.filename}: " if e.filename else ""
        print(f"nspod: {what}{e.strerror or e}", file=sys.stderr)
        return 125


def run() -> None:
    """The console entry point: exits without tearing the interpreter down.

    Interpreter finalization costs several ms per call; join pays it on every
    use. Output is flushed first, so nothing is lost.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":
    run()
