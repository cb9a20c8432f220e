"""make bench's code runs, in a quick mode, and leaves nothing behind."""

import json
import subprocess

import pytest
from conftest import REPO, is_root

pytestmark = pytest.mark.root


def test_bench_quick_runs_and_reports() -> None:
    if not is_root():
        pytest.skip("needs root")
    r = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(REPO / "bench" / "bench.py"),
                        "--quick"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "nspod join POD -- true" in r.stdout and "pause RSS" in r.stdout
    data = json.loads((REPO / "bench" / "out" / "bench.json").read_text())
    res = data["results"]
    for key in ("join_ms", "nsenter_ms", "python_pass_ms", "pause_rss_kb", "create_1st_ms",
                "create_nth_ms", "stop_10_members_ms", "gc_ms", "nspod_create_p_rm_ms"):
        assert res[key] > 0, key
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "nsbench" not in links
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "nspod_bench" not in tables
