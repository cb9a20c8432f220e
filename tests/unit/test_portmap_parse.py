"""-p parsing: what is accepted, and the message for what is not."""

import pytest

from nspod.portspec import Publish, parse_publish


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("8080:80", Publish(8080, 80, "tcp", None)),
        ("8080:80/tcp", Publish(8080, 80, "tcp", None)),
        ("5353:53/udp", Publish(5353, 53, "udp", None)),
        ("127.0.0.1:8080:80", Publish(8080, 80, "tcp", "127.0.0.1")),
        ("0.0.0.0:8080:80", Publish(8080, 80, "tcp", None)),
        ("1:65535", Publish(1, 65535, "tcp", None)),
    ],
)
def test_valid(raw: str, want: Publish) -> None:
    assert parse_publish(raw) == want


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("8080", "is not [HOST_IP:]HOST_PORT:POD_PORT"),
        ("", "is not [HOST_IP:]HOST_PORT:POD_PORT"),
        ("a:80", "is not [HOST_IP:]HOST_PORT:POD_PORT"),
        ("8080:80/sctp", "protocol 'sctp' is not tcp or udp"),
        ("0:80", "port 0 is outside 1-65535"),
        ("8080:65536", "port 65536 is outside 1-65535"),
        ("99999:80", "port 99999 is outside 1-65535"),
        ("300.1.1.1:8080:80", "'300.1.1.1' is not an IPv4 address"),
        ("8080:80:90", "is not [HOST_IP:]HOST_PORT:POD_PORT"),
        ("-1:80", "is not [HOST_IP:]HOST_PORT:POD_PORT"),
    ],
)
def test_invalid(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        parse_publish(raw)
    assert why in str(err.value)


def test_round_trip_through_record() -> None:
    p = parse_publish("127.0.0.1:8080:80/udp")
    assert Publish.from_dict(p.to_dict()) == p
    assert str(p) == "127.0.0.1:8080:80/udp"
    assert p.record == "udp-8080"
