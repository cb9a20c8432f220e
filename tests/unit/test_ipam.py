"""Address allocation on a plain directory: no root, no kernel objects."""

import ipaddress
import threading
from pathlib import Path

import pytest

from nspod import ipam
from nspod.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def held(store: Store) -> dict[str, str]:
    """The address records on disk: address -> the pod holding it."""
    d = Path(store.root) / "ipam"
    return {p.name: p.read_text().strip() for p in d.iterdir() if not p.name.startswith(".")}


def subnet(cidr: str) -> ipam.Subnet:
    return ipam.Subnet(ipaddress.IPv4Network(cidr))


def test_gateway_is_first_host_and_pods_start_after_it(store: Store) -> None:
    s = subnet("10.9.0.0/24")
    assert str(s.gateway) == "10.9.0.1"
    assert ipam.allocate(store, s, "a") == "10.9.0.2"
    assert ipam.allocate(store, s, "b") == "10.9.0.3"
    assert (Path(store.root) / "ipam" / "10.9.0.2").read_text() == "a\n"


def test_released_address_is_reused_after_wrapping(store: Store) -> None:
    s = subnet("10.9.0.0/29")  # .2 .. .6: five pod addresses
    got = [ipam.allocate(store, s, f"p{i}") for i in range(5)]
    assert got == [f"10.9.0.{i}" for i in range(2, 7)]
    with pytest.raises(ipam.AddressUnavailable, match="no address left"):
        ipam.allocate(store, s, "extra")
    ipam.release(store, "10.9.0.4", "p2")
    assert ipam.allocate(store, s, "again") == "10.9.0.4"


def test_release_only_frees_the_holders_address(store: Store) -> None:
    s = subnet("10.9.0.0/24")
    addr = ipam.allocate(store, s, "a")
    ipam.release(store, addr, "someone-else")
    assert held(store) == {addr: "a"}
    ipam.release(store, addr, "a")
    assert held(store) == {}


def test_requested_address(store: Store) -> None:
    s = subnet("10.9.0.0/24")
    assert ipam.allocate(store, s, "a", "10.9.0.77") == "10.9.0.77"
    with pytest.raises(ipam.AddressUnavailable, match="already used by pod 'a'"):
        ipam.allocate(store, s, "b", "10.9.0.77")
    for outside in ("10.9.1.5", "10.9.0.1", "10.9.0.0", "10.9.0.255"):
        with pytest.raises(ipam.AddressUnavailable, match="outside"):
            ipam.allocate(store, s, "b", outside)
    assert held(store) == {"10.9.0.77": "a"}


def test_release_for_pod_frees_by_name(store: Store) -> None:
    s = subnet("10.9.0.0/24")
    a = ipam.allocate(store, s, "a")
    b = ipam.allocate(store, s, "b")
    assert ipam.release_for_pod(store, "a") == [a]
    assert held(store) == {b: "b"}


def test_hint_keeps_allocation_from_scanning_taken_addresses(store: Store) -> None:
    """The 200th allocation tries one address, not 200: count the claims."""
    s = subnet("10.9.0.0/16")
    for i in range(200):
        ipam.allocate(store, s, f"p{i}")
    tried = []
    real = ipam._claim

    def counting(path: str, pod: str) -> bool:
        tried.append(Path(path).name)
        return real(path, pod)

    ipam._claim = counting  # type: ignore[assignment]
    try:
        assert ipam.allocate(store, s, "last") == "10.9.0.202"
    finally:
        ipam._claim = real  # type: ignore[assignment]
    assert tried == ["10.9.0.202"]


def test_concurrent_allocations_are_distinct(store: Store) -> None:
    s = subnet("10.9.0.0/24")
    out: list[str] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        addr = ipam.allocate(store, s, f"p{i}")
        with lock:
            out.append(addr)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 24


def test_parse_ip() -> None:
    assert ipam.parse_ip("10.0.0.5") == "10.0.0.5"
    with pytest.raises(ValueError, match="not an IPv4 address"):
        ipam.parse_ip("10.0.0")
