"""Names, records, process identity (no root needed)."""

import os
import subprocess
from pathlib import Path

import pytest

from nspod.errors import UsageError
from nspod.exits import exit_code
from nspod.store import PodRecord, ProcId, Store, check_name, proc_start, write_atomic


@pytest.mark.parametrize("name", ["a", "web-1", "A.b_c", "9" * 63])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../evil", "a/b", "-x", ".x", "x" * 64, "a b", "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)


def test_record_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure()
    Path(store.pod_dir("p")).mkdir()
    rec = PodRecord(name="p", hostname="h", created=1.5, pid=42, pid_start=7,
                    spec={"net": "none"}, net={"ip": "10.0.0.2"})
    store.save(rec)
    assert store.load("p") == rec
    assert store.names() == ["p"]
    # unknown keys from a newer nspod are ignored
    path = Path(store.pod_dir("p")) / "pod.json"
    data = path.read_text().replace('"name"', '"future": 1, "name"')
    write_atomic(str(path), data)
    assert store.load("p") == rec


def test_a_pid_is_never_trusted_alone() -> None:
    me = ProcId(os.getpid(), proc_start(os.getpid()) or 0)
    assert me.alive()
    assert not ProcId(me.pid, me.start + 1).alive()
    child = subprocess.Popen(["true"])
    child.wait()
    assert proc_start(child.pid) is None


def test_exit_codes() -> None:
    assert exit_code(3 << 8) == 3
    assert exit_code(9) == 137
    assert exit_code(15) == 143
