"""Volume specs and path resolution inside a root (no root needed)."""

import os
from pathlib import Path

import pytest

from nspod.rootfs import Volume, parse_volume, resolve_in


def test_parse_volume() -> None:
    assert parse_volume("/a:/b") == Volume("/a", "/b", False)
    assert parse_volume("/a/:/b/c/:ro") == Volume("/a", "/b/c", True)
    assert parse_volume("/a:/b:rw") == Volume("/a", "/b", False)
    for bad in ("a:/b", "/a:b", "/a", "/a:/b:xx", ":/b", "/a:/b:ro:x"):
        with pytest.raises(ValueError):
            parse_volume(bad)


def where(root: Path, path: str, create: str | None = None) -> str:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        got = resolve_in(fd, path, create)
        try:
            return os.readlink(f"/proc/self/fd/{got}")
        finally:
            os.close(got)
    finally:
        os.close(fd)


def test_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "abs").symlink_to("/etc")
    (root / "rel").symlink_to("../../../../etc")
    (root / "loop").symlink_to("loop")
    assert where(root, "/abs") == str(root / "etc")
    assert where(root, "/rel") == str(root / "etc")
    assert where(root, "/../../..") == str(root)
    with pytest.raises(OSError):
        where(root, "/loop")
    with pytest.raises(FileNotFoundError):
        where(root, "/missing")


def test_create_makes_paths_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(str(outside))
    assert where(root, "/escape/a/b", "dir") == str(root / str(outside).lstrip("/") / "a" / "b")
    assert list(outside.iterdir()) == []
    assert where(root, "/x/file", "file") == str(root / "x" / "file")
    assert (root / "x" / "file").is_file()
