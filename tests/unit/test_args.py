"""The command-line parser and the CLI's usage errors (no root needed)."""

import pytest

from nspod.args import Opt, Verb, parse, usage
from nspod.cli import VERBS, main
from nspod.errors import UsageError

JOIN = VERBS["join"]


def test_join_options_before_and_after_the_pod() -> None:
    a = parse(JOIN, ["-e", "A=1", "web", "-w", "/tmp", "--env=B=2", "--", "ls", "-l"])
    assert a.pod == "web" and a.workdir == "/tmp"
    assert a.env == [("A", "1"), ("B", "2")]
    assert a.command == ["ls", "-l"]


def test_join_command_without_double_dash_keeps_its_options() -> None:
    a = parse(JOIN, ["web", "ls", "-l", "-e"])
    assert a.command == ["ls", "-l", "-e"]


def test_a_command_verb_needs_a_command() -> None:
    verb = Verb("run", "", ("POD",), (), command=True)
    with pytest.raises(UsageError, match="no command given"):
        parse(verb, ["web", "--"])
    with pytest.raises(UsageError):
        parse(verb, ["web"])


def test_join_command_may_be_left_out_for_an_images_own() -> None:
    # join --image POD: the image's Entrypoint + Cmd; without an image, join says so (integration)
    assert parse(JOIN, ["--image", "busybox", "web"]).command == []


def test_short_option_with_attached_value_and_flag_clusters() -> None:
    verb = Verb("x", "", ("A?",), (Opt(("-e",), "env", "", "KV", True),
                                   Opt(("-q",), "q", ""), Opt(("-j",), "j", "")))
    a = parse(verb, ["-eK=V", "-qj", "name"])
    assert a.env == ["K=V"] and a.q and a.j and a.a == "name"


def test_unknown_and_missing() -> None:
    with pytest.raises(UsageError, match="unknown option --nope"):
        parse(VERBS["ls"], ["--nope"])
    with pytest.raises(UsageError, match="needs a value"):
        parse(JOIN, ["web", "-w"])
    with pytest.raises(UsageError, match="missing POD"):
        parse(VERBS["stop"], [])
    with pytest.raises(UsageError, match="unexpected argument"):
        parse(VERBS["ls"], ["extra"])


def test_bad_values_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="not a number"):
        parse(VERBS["stop"], ["-t", "soon", "p"])
    with pytest.raises(UsageError, match="negative"):
        parse(VERBS["stop"], ["-t", "-1", "p"])


def test_every_verb_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name, verb in VERBS.items():
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: nspod {name}")
        assert usage(verb) in out


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "--bogus"]) == 2
    assert capsys.readouterr().err == "nspod: create: unknown option --bogus\n"
    assert main([]) == 2
    assert main(["--version"]) == 0


def test_unexpected_failure_is_one_line_and_125(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The last resort in main: a bug anywhere gives one line naming the verb, not a trace."""

    def broken(_a: object, _root: object) -> int:
        raise KeyError("spec")

    monkeypatch.setattr(VERBS["ls"], "run", broken)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert main(["ls"]) == 125
    assert capsys.readouterr().err == (
        "nspod: ls: internal error: KeyError: 'spec' (run with --debug for the trace)\n")
    assert main(["--debug", "ls"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("(run with --debug for the trace)\n")
