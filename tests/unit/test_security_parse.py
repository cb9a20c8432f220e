"""Capability names, the podman add/drop rules, and --user lookups in a root's files."""

from pathlib import Path

import pytest

from nspod.cli import main
from nspod.security import (
    CAP_BITS,
    DEFAULT_CAPS,
    SecurityOpts,
    UnknownUser,
    last_cap,
    lookup_user,
    parse_cap,
    resolve,
    tweak,
)

DEFAULT = frozenset(CAP_BITS[c] for c in DEFAULT_CAPS)


@pytest.mark.parametrize(
    ("name", "canon"),
    [("NET_ADMIN", "NET_ADMIN"), ("CAP_NET_ADMIN", "NET_ADMIN"), ("cap_sys_admin", "SYS_ADMIN"),
     ("net_raw", "NET_RAW"), ("all", "ALL"), ("ALL", "ALL")],
)
def test_cap_names(name: str, canon: str) -> None:
    assert parse_cap(name) == canon


@pytest.mark.parametrize("name", ["", "CAP_", "NET", "CAP_ALL", "NET_ADMINS", "42"])
def test_unknown_cap(name: str) -> None:
    with pytest.raises(ValueError, match="unknown capability"):
        parse_cap(name)


def test_default_set_is_the_container_mask() -> None:
    # the CapEff podman shows for root in a default container (issue 18)
    assert sum(1 << b for b in DEFAULT) == 0x800405FB


def test_tweak_rules() -> None:
    every = frozenset(range(last_cap() + 1))
    admin, chown = CAP_BITS["NET_ADMIN"], CAP_BITS["CHOWN"]
    assert tweak(DEFAULT, ["NET_ADMIN"], []) == DEFAULT | {admin}
    assert tweak(DEFAULT, [], ["CHOWN"]) == DEFAULT - {chown}
    assert tweak(DEFAULT, ["CHOWN"], ["CHOWN"]) == DEFAULT  # add wins
    assert tweak(DEFAULT, [], ["ALL"]) == frozenset()
    assert tweak(DEFAULT, ["NET_ADMIN"], ["ALL"]) == {admin}
    assert tweak(DEFAULT, ["ALL"], ["CHOWN"]) == every - {chown}


def test_join_flags_apply_on_top_of_pod_defaults() -> None:
    admin, raw = CAP_BITS["NET_ADMIN"], CAP_BITS["NET_RAW"]
    pod = SecurityOpts(cap_add=("NET_ADMIN",), cap_drop=("NET_RAW",))
    assert resolve(pod, SecurityOpts()).caps == (DEFAULT | {admin}) - {raw}
    assert resolve(pod, SecurityOpts(cap_add=("NET_RAW",))).caps == DEFAULT | {admin, raw}
    assert resolve(pod, SecurityOpts(cap_drop=("ALL",))).caps == frozenset()
    priv = resolve(SecurityOpts(privileged=True), SecurityOpts(cap_drop=("ALL",)))
    assert priv.privileged and priv.caps == frozenset(range(last_cap() + 1))
    assert SecurityOpts.from_spec(pod.to_spec()) == pod


def test_cli_rejects_unknown_cap_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["join", "--cap-add", "CAP_FLY", "p", "--", "true"]) == 2
    assert capsys.readouterr().err == (
        "nspod: join: invalid value for --cap-add: unknown capability 'CAP_FLY'\n"
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "# a comment\n"
        "www:x:33:33:www:/var/www:/bin/false\n"
        "svc:x:1001:1001::/srv:/bin/false\n"
    )
    (tmp_path / "etc" / "group").write_text(
        "root:x:0:\nwww:x:33:\nusers:x:100:www,svc\nweb:x:200:www\nsvc:x:1001:\n"
    )
    return tmp_path


def test_user_by_name_gets_groups_and_home(root: Path) -> None:
    u = lookup_user("www", root)
    assert (u.uid, u.gid, u.groups, u.home) == (33, 33, (100, 200), "/var/www")


def test_user_by_uid_found_in_passwd(root: Path) -> None:
    u = lookup_user("1001", root)
    assert (u.uid, u.gid, u.groups, u.home) == (1001, 1001, (100,), "/srv")


def test_explicit_group_replaces_supplementary(root: Path) -> None:
    u = lookup_user("www:users", root)
    assert (u.uid, u.gid, u.groups) == (33, 100, ())
    assert lookup_user("www:5", root).gid == 5


def test_unknown_uid_is_allowed(root: Path) -> None:
    u = lookup_user("4242:4343", root)
    assert (u.uid, u.gid, u.groups, u.home) == (4242, 4343, (), "/")
    assert lookup_user("4242", root).gid == 0


@pytest.mark.parametrize("spec", ["nobody", "www:nogroup", "", ":0", "www:"])
def test_unknown_names_fail_with_125(root: Path, spec: str) -> None:
    with pytest.raises(UnknownUser) as e:
        lookup_user(spec, root)
    assert e.value.code == 125


def test_lookup_reads_the_given_root_not_the_hosts(tmp_path: Path) -> None:
    # an empty root knows no names, even ones the host has
    with pytest.raises(UnknownUser, match=str(tmp_path)):
        lookup_user("root", tmp_path)
    assert lookup_user("0", tmp_path).uid == 0


def test_busybox_rootfs_users() -> None:
    rootfs = Path(__file__).resolve().parent.parent / "rootfs"
    if not (rootfs / "etc" / "passwd").exists():
        pytest.skip("tests/rootfs missing: run make rootfs")
    u = lookup_user("www", rootfs)
    assert (u.uid, u.gid, u.groups, u.home) == (33, 33, (100,), "/var/www")
