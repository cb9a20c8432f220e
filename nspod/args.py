"""A small command-line parser, table-driven, that costs nothing to import.

argparse alone costs ~9 ms here, half of a bare interpreter's start, and
`nspod join` must start fast. Options may come before or after positionals;
`--` ends options. A verb with `command=True` stops at its first positional
after the fixed ones (podman exec style), so CMD's own options pass through.
"""

from __future__ import annotations

from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~13 ms to import here: only for the type checker
    from typing import Any


class Opt:
    """One option: its names, where its value goes, and its help.

    Plain classes, not dataclasses: dataclasses costs ~25 ms to import.
    """

    __slots__ = ("names", "dest", "help", "metavar", "multi", "default", "convert")

    def __init__(
        self,
        names: tuple[str, ...],  # e.g. ("-e", "--env")
        dest: str,
        help: str,
        metavar: str | None = None,  # None: a flag
        multi: bool = False,
        default: Any = None,
        convert: Any = None,  # callable(str) -> value, raising ValueError
    ) -> None:
        self.names = names
        self.dest = dest
        self.help = help
        self.metavar = metavar
        self.multi = multi
        self.default = default
        self.convert = convert

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None


class Verb:
    __slots__ = ("name", "summary", "positionals", "options", "command", "details", "run", "sub")

    def __init__(
        self,
        name: str,
        summary: str,
        positionals: tuple[str, ...] = (),  # "NAME", "NAME?" optional, "NAME..." many, "NAME*" any
        options: tuple[Opt, ...] = (),
        command: bool | str = False,  # takes -- CMD [ARG...]; a string: an optional
        # command, shown so in the usage line (join: the image's own command)
        details: str = "",
        run: Any = None,  # the handler: callable(Parsed, root: str | None) -> exit code
        sub: tuple[Verb, ...] = (),  # sub-verbs, named "THIS SUB" (nspod network create)
    ) -> None:
        self.name = name
        self.summary = summary
        self.positionals = positionals
        self.options = options
        self.command = command
        self.details = details
        self.run = run
        self.sub = sub

    def find_sub(self, word: str) -> Verb | None:
        return next((v for v in self.sub if v.name.split()[-1] == word), None)


HELP = Opt(("-h", "--help"), "help", "show this help and exit")


class Parsed:
    def __init__(self, verb: str, values: dict[str, Any], command: list[str]) -> None:
        self.verb = verb
        self.values = values
        self.command = command

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def _fixed_count(verb: Verb) -> int:
    return sum(1 for p in verb.positionals if not p.endswith(("?", "...", "*")))


def parse(verb: Verb, argv: list[str]) -> Parsed:
    opts = {n: o for o in (*verb.options, HELP) for n in o.names}
    values: dict[str, Any] = {}
    for o in (*verb.options, HELP):
        values[o.dest] = [] if o.multi else (o.default if o.takes_value else False)
    positional: list[str] = []
    command: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            rest = argv[i:]
            if verb.command:
                command = rest
            else:
                positional.extend(rest)
            break
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if not arg.startswith("--") and len(arg) > 2:
                # -eKEY=VAL, or a cluster of flags such as -it
                head = opts.get(arg[:2])
                if head is not None and head.takes_value:
                    name, eq, inline = arg[:2], "=", arg[2:]
                else:
                    for ch in arg[1:]:
                        flag = opts.get("-" + ch)
                        if flag is None or flag.takes_value:
                            raise UsageError(f"{verb.name}: unknown option -{ch} in {arg}")
                        values[flag.dest] = True
                    continue
            found = opts.get(name)
            if found is None:
                raise UsageError(f"{verb.name}: unknown option {name}")
            o = found
            if not o.takes_value:
                if eq:
                    raise UsageError(f"{verb.name}: option {name} takes no value")
                values[o.dest] = True
                continue
            if eq:
                raw = inline
            elif i < len(argv):
                raw = argv[i]
                i += 1
            else:
                raise UsageError(f"{verb.name}: option {name} needs a value ({o.metavar})")
            val = _convert(verb, o, name, raw)
            if o.multi:
                values[o.dest].append(val)
            else:
                values[o.dest] = val
            continue
        if verb.command and len(positional) >= _fixed_count(verb):
            command = argv[i - 1 :]
            break
        positional.append(arg)
    if values["help"]:
        return Parsed(verb.name, values, command)
    _assign(verb, positional, values)
    if verb.command is True and not command:
        raise UsageError(f"{verb.name}: no command given (nspod {verb.name} POD -- CMD [ARG...])")
    return Parsed(verb.name, values, command)


def parse_sub(group: str, verbs: dict[str, Verb], args: list[str]) -> tuple[str, Verb, Parsed]:
    """`nspod GROUP VERB ARGS...` (image, kube): the verb named first in args, its
    arguments parsed."""
    name = args.pop(0)
    verb = verbs.get(name)
    if verb is None:
        raise UsageError(f"{group}: unknown verb {name!r} (see nspod {group} --help)")
    return name, verb, parse(verb, args)


def _convert(verb: Verb, o: Opt, name: str, raw: str) -> Any:
    if o.convert is None:
        return raw
    try:
        return o.convert(raw)
    except ValueError as e:
        raise UsageError(f"{verb.name}: invalid value for {name}: {e}") from None


def _assign(verb: Verb, positional: list[str], values: dict[str, Any]) -> None:
    rest = list(positional)
    for spec in verb.positionals:
        key = spec.rstrip("?.*").lower()
        if spec.endswith("*"):
            values[key], rest = rest, []
        elif spec.endswith("..."):
            if not rest:
                raise UsageError(f"{verb.name}: missing {spec.rstrip('.')}")
            values[key], rest = rest, []
        elif spec.endswith("?"):
            values[key] = rest.pop(0) if rest else None
        else:
            if not rest:
                raise UsageError(f"{verb.name}: missing {spec}")
            values[key] = rest.pop(0)
    if rest:
        raise UsageError(f"{verb.name}: unexpected argument {rest[0]!r}")


def usage(verb: Verb) -> str:
    pos = " ".join(
        f"[{p[:-1]}]" if p.endswith("?")
        else f"{p[:-3]}..." if p.endswith("...")
        else f"[{p[:-1]}...]" if p.endswith("*")
        else p
        for p in verb.positionals
    )
    cmd = (f" {verb.command}" if isinstance(verb.command, str)
           else " -- CMD [ARG...]" if verb.command else "")
    if verb.sub:
        pos = "VERB ..."
    lines = [f"usage: nspod {verb.name} [OPTIONS]{' ' + pos if pos else ''}{cmd}", "",
             verb.summary]
    if verb.details:
        lines += ["", verb.details]
    if verb.sub:
        lines += ["", "verbs:"] + [f"  {v.name.split()[-1]:<10} {v.summary}" for v in verb.sub]
        lines += ["", f"Run 'nspod {verb.name} VERB --help' for a verb's options."]
    lines += ["", "options:"]
    for o in (*verb.options, HELP):
        flag = ", ".join(o.names) + (f" {o.metavar}" if o.metavar else "")
        extra = " (repeatable)" if o.multi else ""
        if len(flag) > 28:  # a long metavar: the meaning goes on its own line
            lines += [f"  {flag}", f"  {'':<28} {o.help}{extra}"]
        else:
            lines.append(f"  {flag:<28} {o.help}{extra}")
    return "\n".join(lines)
