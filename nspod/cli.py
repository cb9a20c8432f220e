"""nspod's command line: find the verb, parse, run its handler, and turn what
went wrong into one line and an exit code. Only the CLI layer prints.

The verbs come from the tables in TABLES: a domain adds its own module with
a VERBS tuple (see verbs.py) and is named here.
"""

from __future__ import annotations

import os
import sys

from nspod import __version__, imagecli, kube, lifecycle_cli, netverbs, verbs
from nspod.args import parse, usage
from nspod.errors import FAILED, USAGE, NotRoot, NspodError, UsageError, os_reason
from nspod.handlers import DEFAULT_ROOT

TABLES = (verbs.VERBS, imagecli.VERBS, netverbs.VERBS, kube.VERBS, lifecycle_cli.VERBS)
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
    listing = "\n".join(f"  {v.name:<11} {v.summary}" for v in VERBS.values())
    return GLOBAL_HELP.format(verbs=listing, root=DEFAULT_ROOT)


def _reopen_stdio() -> None:
    """Reopens fds 0-2 on /dev/null where the caller closed them (`nspod ls >&-`).

    Without them print fails (Python set sys.stdout to None), and the first
    file nspod opened would take the closed number: a record or a log would
    receive output meant for the terminal, and a pod's processes would inherit it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)  # the lowest free number: fd
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)
    for fd, stream in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if getattr(sys, stream) is None:
            setattr(sys, stream, open(fd, "r" if fd == 0 else "w", closefd=False))


def _internal_error(name: str | None, e: BaseException) -> str:
    why = str(e) or type(e).__name__
    if not isinstance(e, OSError):
        why = f"{type(e).__name__}: {why}"
    where = f"{name}: " if name else ""
    return f"nspod: {where}internal error: {why} (run with --debug for the trace)"


def main(argv: list[str] | None = None) -> int:
    _reopen_stdio()  # before anything else opens a file
    args = list(sys.argv[1:] if argv is None else argv)
    debug = False
    root: str | None = None
    name: str | None = None
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
        while verb.sub and args and not args[0].startswith("-"):
            sub = verb.find_sub(args[0])
            if sub is None:
                raise UsageError(f"{verb.name}: unknown verb {args[0]!r} "
                                 f"(see nspod {verb.name} --help)")
            args.pop(0)
            verb, name = sub, sub.name
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
        where = f"{name}: " if name else ""
        what = f"{e.filename}: " if e.filename else ""
        print(f"nspod: {where}{what}{os_reason(e)}", file=sys.stderr)
        return FAILED
    except Exception as e:  # the last resort: one line, never a traceback
        if debug:
            import traceback

            traceback.print_exc()
        print(_internal_error(name, e), file=sys.stderr)
        return FAILED


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
    except OSError as e:  # e.g. `nspod ls >/dev/full`
        try:
            os.write(2, f"nspod: write output: {os_reason(e)}\n".encode())
        except OSError:
            pass
        code = code or FAILED
    os._exit(code)


if __name__ == "__main__":
    run()
