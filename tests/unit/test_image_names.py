"""Image references, names and the config a member gets (no root needed)."""

import pytest

from nspod import image, imagenames
from nspod.errors import UsageError


@pytest.mark.parametrize(("ref", "full"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("team/app", "docker.io/team/app:latest"),
    ("127.0.0.1:5000/test/bb:two", "127.0.0.1:5000/test/bb:two"),
    ("localhost/app", "localhost/app:latest"),
    ("quay.io/a/b@sha256:" + "a" * 64, "quay.io/a/b@sha256:" + "a" * 64),
])
def test_normalize(ref: str, full: str) -> None:
    assert imagenames.normalize(ref) == full


def test_short_names_go_to_the_configured_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSPOD_REGISTRY", "127.0.0.1:5000")
    assert imagenames.normalize("busybox") == "127.0.0.1:5000/busybox:latest"


@pytest.mark.parametrize("ref", ["", "Busybox", "a b", "../x", "a//b", "x:t@sha256:1",
                                 "x@md5:00", "a+b", "x:" + "t" * 200])
def test_not_a_reference(ref: str) -> None:
    with pytest.raises(UsageError, match="invalid image reference"):
        imagenames.normalize(ref)


def test_split_name() -> None:
    assert imagenames.split_name("127.0.0.1:5000/a/b:v1") == ("127.0.0.1:5000/a/b", "v1")
    assert imagenames.split_name("r/a@sha256:" + "0" * 64) == ("r/a", "<none>")


def test_command_as_kubernetes_decides_it() -> None:
    cfg = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"]}
    assert image.command(cfg) == ["/bin/sh", "-c", "echo hi"]
    assert image.command(cfg, ["true"]) == ["true"]  # a command replaces both
    assert image.command(cfg, None, ["echo ho"]) == ["/bin/sh", "-c", "echo ho"]
    assert image.command({"Cmd": ["top"]}) == ["top"]
    assert image.command({}) == []


def test_env_of() -> None:
    assert image.env_of({"Env": ["A=1", "B=x=y", "=bad", "C="]}) == {"A": "1", "B": "x=y",
                                                                  "C": ""}


def test_pull_policy() -> None:
    assert image.check_policy("never") == "never"
    with pytest.raises(UsageError):
        image.check_policy("sometimes")


def test_every_image_verb_says_what_it_does() -> None:
    from nspod.args import usage
    from nspod.imageverbs import IMAGE_VERBS

    for name, verb in IMAGE_VERBS.items():
        text = usage(verb)
        assert verb.summary.strip() and "exit codes:" in text, name
        for opt in verb.options:
            assert opt.help in text and all(n in text for n in opt.names), (name, opt.names)
