"""Issue 11: nothing leans on an interpreter-private module without a tested public fallback."""

import hashlib
import importlib
import sys

import pytest

from nspod import lean

PRIVATE = ("_sha256", "_sha2", "_json")


@pytest.mark.parametrize("hidden", [(), ("_sha256",), ("_sha256", "_sha2")])
def test_sha256_is_the_same_whichever_module_gives_it(
        monkeypatch: pytest.MonkeyPatch, hidden: tuple[str, ...]) -> None:
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    data = b"/run/nspod"
    assert lean.sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_records_read_and_write_without_the_private_json_module(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = {"name": "web", "pid": 42, "spec": {"ports": [[8080, 80]], "ip": None}, "ok": True}
    fast = lean.dumps(rec)
    monkeypatch.setitem(sys.modules, "_json", None)
    fallback = importlib.reload(lean)
    try:
        assert fallback.loads(fast) == rec
        assert fallback.loads(fallback.dumps(rec)) == rec
        with pytest.raises(ValueError):
            fallback.loads('{"a": 1} x')
    finally:
        monkeypatch.undo()
        importlib.reload(lean)
    assert lean.loads(fast) == rec


def test_mounts_reads_mount_points_as_they_are() -> None:
    text = (
        "36 35 0:4 net:[4026532182] /run/a\\040b/ns/x\\134y/net rw - nsfs nsfs rw\n"
        "37 35 8:1 / /srv/tab\\011and\\012newline rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "38 35 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "not a mountinfo line\n"
    )
    assert lean.mounts(text) == [
        ("/run/a b/ns/x\\y/net", "nsfs", "rw"),
        ("/srv/tab\tand\nnewline", "ext4", "rw"),
        ("/sys/fs/cgroup", "cgroup2", "rw,nsdelegate"),
    ]
    assert any(target == "/" for target, _, _ in lean.mounts())  # this process's own
