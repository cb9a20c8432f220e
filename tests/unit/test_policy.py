"""Restart policies, durations, backoff and --since: the rules, without a kernel."""

import pytest

from nspod import policy
from nspod.cli import main
from nspod.logread import parse_since


@pytest.mark.parametrize("text,want", [
    ("no", "no"), ("always", "always"), ("unless-stopped", "unless-stopped"),
    ("on-failure", "on-failure"), ("on-failure:3", "on-failure:3"),
    ("on-failure:03", "on-failure:3"),
])
def test_restart_policies(text: str, want: str) -> None:
    assert policy.parse_restart(text) == want


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:x", "on-failure:-1", ""])
def test_bad_restart_policies(text: str) -> None:
    with pytest.raises(ValueError):
        policy.parse_restart(text)


@pytest.mark.parametrize("text,secs", [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("1.5", 1.5), ("0.3s", 0.3),
])
def test_durations(text: str, secs: float) -> None:
    assert policy.parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["", "5x", "m", "10 s", "-1", "1m5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        policy.parse_duration(text)


def _rec(restart: str, **kw: object) -> dict[str, object]:
    return {"restart": restart, "detached": True, **kw}


def test_who_runs_again() -> None:
    failed, ok = 3 << 8, 0
    assert not policy.will_restart(_rec("no"), failed)
    assert policy.will_restart(_rec("always"), ok)
    assert policy.will_restart(_rec("on-failure"), failed)
    assert not policy.will_restart(_rec("on-failure"), ok)
    assert policy.will_restart(_rec("on-failure:3", restarts=2), failed)
    assert not policy.will_restart(_rec("on-failure:3", restarts=3), failed)
    assert policy.will_restart(_rec("on-failure"), 9)  # killed by SIGKILL: a failure
    assert not policy.will_restart(_rec("always", user_stopped=True), failed)
    assert not policy.will_restart(_rec("always", pod_stopped=True), failed)
    assert policy.will_restart(_rec("no", health_restart=True), ok)


def test_backoff_doubles_to_a_cap_and_resets_after_a_long_run() -> None:
    assert policy.next_delay({"started": 100.0}, 100.5) == policy.BACKOFF_FIRST
    assert policy.next_delay({"started": 100.0, "backoff": 0.4}, 100.5) == 0.8
    assert policy.next_delay({"started": 100.0, "backoff": 50.0}, 100.5) == policy.BACKOFF_CAP
    assert policy.next_delay({"started": 100.0, "backoff": 50.0}, 111.0) == policy.BACKOFF_FIRST


def test_health_options() -> None:
    assert policy.health_spec(None, None, None, None, None, None) is None
    spec = policy.health_spec("true", 5.0, None, None, None, "restart")
    assert spec == {"cmd": "true", "interval": 5.0, "retries": 3, "start_period": 0.0,
                    "timeout": 30.0, "on_failure": "restart"}
    with pytest.raises(ValueError):
        policy.health_spec(None, 5.0, None, None, None, None)
    with pytest.raises(ValueError):
        policy.health_spec("true", None, None, None, None, "reboot")


def test_since() -> None:
    now = 1_800_000_000.25
    assert parse_since("1800000000.25") == b"2027-01-15T08:00:00.250000000Z"
    assert parse_since("10s", now) == b"2027-01-15T07:59:50.250000000Z"
    assert parse_since("2026-12-01T00:00:00Z") == b"2026-12-01T00:00:00.000000000Z"
    assert parse_since("2026-12-01T00:00:00.5Z") == b"2026-12-01T00:00:00.500000000Z"
    with pytest.raises(ValueError):
        parse_since("yesterday")


def test_join_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["join", "--restart", "sometimes", "p", "--", "true"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert main(["wait", "--timeout", "soon", "p"]) == 2
    assert main(["join", "-d", "--log-max-size", "1k", "p", "--", "true"]) == 2
    assert "minimum of 32k" in capsys.readouterr().err
