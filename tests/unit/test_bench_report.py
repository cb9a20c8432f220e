"""bench's table judges each target by its limit (no root needed)."""

import re
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import bench  # noqa: E402

AT_LIMITS = {"python_pass_ms": 10.0, "join_ms": 25.0, "join_unconfined_ms": 24.0,
             "create_1st_ms": 100.0, "create_nth_ms": 120.0, "scale_pods": 200,
             "pause_rss_kb": 32.0}
# figure in bench's input -> (its row in the table, its entry in bench.json's targets,
# the factor that takes it past its limit)
JUDGED = {
    "join_ms": ("nspod join POD -- true", "join <= 2.5x python -c pass (aim 2x)", 1.01),
    "join_unconfined_ms": ("seccomp=unconfined", "seccomp filter adds <= 1 ms to join", 0.99),
    "pause_rss_kb": ("pause RSS", "pause RSS <= 32 kB", 1.01),
    "create_nth_ms": ("create, 200th pod", "200th create <= 1.2x the 1st", 1.01),
}


def judged(report: str) -> dict[str, str]:
    return {re.split(r"\s{2,}", line.strip())[0]: line.rsplit(": ", 1)[1]
            for line in report.splitlines() if line.endswith((": PASS", ": MISS"))}


def test_a_figure_at_its_limit_passes() -> None:
    assert judged(bench.report(AT_LIMITS)) == {row: "PASS" for row, _, _ in JUDGED.values()}
    assert bench.targets(AT_LIMITS) == {
        name: dict(t, **{"pass": True}) for name, t in bench.targets(AT_LIMITS).items()}
    assert sorted(bench.targets(AT_LIMITS)) == sorted(name for _, name, _ in JUDGED.values())


@pytest.mark.parametrize("key", sorted(JUDGED))
def test_a_figure_over_its_limit_misses(key: str) -> None:
    row, name, factor = JUDGED[key]
    r = dict(AT_LIMITS, **{key: AT_LIMITS[key] * factor})
    if key == "join_ms":  # the filter's cost stays the same
        r["join_unconfined_ms"] += r["join_ms"] - AT_LIMITS["join_ms"]
    want = {other: "MISS" if other == row else "PASS" for other, _, _ in JUDGED.values()}
    assert judged(bench.report(r)) == want
    assert {n: t["pass"] for n, t in bench.targets(r).items()} == {
        other: other != name for _, other, _ in JUDGED.values()}
