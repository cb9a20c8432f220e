"""The subnet pool: parsing, the first free block, clashes named (no root needed)."""

import ipaddress

import pytest

from nspod import subnets
from nspod.errors import UsageError
from nspod.portmap import network_elements


def used(*pairs: tuple[str, str]) -> list[subnets.Used]:
    return [subnets.Used(ipaddress.IPv4Network(n, strict=False), what) for n, what in pairs]


def test_default_pool_starts_at_podmans_subnet_and_skips_it_when_taken() -> None:
    pool = subnets.parse_pool(subnets.DEFAULT_POOL)
    assert str(subnets.pick(pool, [])) == "10.88.0.0/16"
    podman = used(("10.88.0.1/16", "10.88.0.1/16 on cni-podman0"))
    assert str(subnets.pick(pool, podman)) == "10.89.0.0/16"


def test_a_route_covering_blocks_skips_them_all() -> None:
    pool = subnets.parse_pool("10.88.0.0/13:16,172.28.0.0/14:16")
    vpn = used(("10.0.0.0/8", "route 10.0.0.0/8 dev tun0"))
    assert str(subnets.pick(pool, vpn)) == "172.28.0.0/16"
    assert subnets.pick(pool, vpn + used(("172.16.0.0/12", "route"))) is None


def test_clash_names_what_overlaps() -> None:
    hit = subnets.clash(ipaddress.IPv4Network("10.88.0.0/24"),
                        used(("192.168.1.0/24", "a"), ("10.88.0.1/16", "10.88.0.1/16 on x")))
    assert hit is not None and hit.what == "10.88.0.1/16 on x"
    assert subnets.clash(ipaddress.IPv4Network("10.89.0.0/24"), used(("10.88.0.0/16", "x"))) \
        is None


@pytest.mark.parametrize("raw", ["10.0.0.1/8:16", "10.0.0.0/16:8", "10.0.0.0/16:30", "nope"])
def test_malformed_pool_is_a_usage_error(raw: str) -> None:
    with pytest.raises(UsageError):
        subnets.parse_pool(raw)


def test_network_elements_delete_succeeds_whether_present_or_not() -> None:
    script = network_elements("t", "br", "10.1.0.0/24", False, "delete")
    lines = script.splitlines()
    # each delete follows an add of the same element, in one transaction
    adds = [ln for ln in lines if ln.startswith("add ")]
    deletes = [ln for ln in lines if ln.startswith("delete ")]
    assert [ln.replace("delete", "add", 1) for ln in deletes] == adds
    assert lines.index(deletes[0]) > lines.index(adds[-1])
    assert 'add element ip t outbound { 10.1.0.0/24 }' in lines
    internal = network_elements("t", "br", "10.1.0.0/24", True, "add")
    assert "outbound" not in internal and 'internal { "br" }' in internal
