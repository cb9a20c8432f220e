"""Size, pids and cpus parsing; cgroup layout detection from mountinfo text."""

import pytest

from nspod.cgroups import Layout, parse_mountinfo
from nspod.cli import main
from nspod.limits import (
    UNLIMITED,
    parse_cpus,
    parse_memory,
    parse_pids,
    parse_size,
    pids_limit,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64M", 64 << 20),
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("1GiB", 1 << 30),
        ("512kb", 512 << 10),
        ("1.5G", 3 << 29),
        ("1048576", 1 << 20),
        ("100b", 100),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "64X", "-1M", "0", "1..5G", "64 MB extra", "0x10"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_memory_has_a_floor() -> None:
    assert parse_memory("6M") == 6 << 20
    with pytest.raises(ValueError, match="minimum"):
        parse_memory("1M")


def test_pids_and_cpus() -> None:
    assert parse_pids("20") == 20
    assert parse_pids("0") == parse_pids("-1") == UNLIMITED
    assert pids_limit(None) == 2048 and pids_limit(UNLIMITED) is None and pids_limit(5) == 5
    assert parse_cpus("0.5") == 0.5
    for bad in ("-2", "-3", "x", "1.5"):
        with pytest.raises(ValueError):
            parse_pids(bad)
    for bad in ("0", "0.001", "-1", "two", "nan"):
        with pytest.raises(ValueError):
            parse_cpus(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "--memory", "lots", "p"],
        ["create", "--memory", "1k", "p"],
        ["create", "--pids", "-2", "p"],
        ["create", "--shm-size", "0", "p"],
        ["create", "--cpus", "none", "p"],
        ["create", "--pids", "99999999999999999999", "p"],
        ["create", "--memory", "99999999999999999999T", "p"],
        ["create", "--cpus", "1e6", "p"],
        ["create", "--cpus", "nan", "p"],
        ["create", "--rootfs", "", "p"],
    ],
)
def test_cli_rejects_bad_limits_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nspod: create: invalid value for --") and err.count("\n") == 1


HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""


def test_hybrid_layout_is_v1_with_cpu_and_cpuacct_sharing_a_hierarchy() -> None:
    layout = parse_mountinfo(HYBRID)
    assert layout is not None and layout.version == 1
    assert layout.mounts["memory"] == "/sys/fs/cgroup/memory"
    assert layout.mounts["cpu"] == layout.mounts["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert "cpuset" not in layout.mounts
    assert layout.bases() == [
        "/sys/fs/cgroup/cpu,cpuacct/nspod",
        "/sys/fs/cgroup/memory/nspod",
        "/sys/fs/cgroup/pids/nspod",
    ]


def test_unified_layout_is_v2() -> None:
    assert parse_mountinfo(UNIFIED) == Layout(2, {"": "/sys/fs/cgroup"})


def test_no_cgroup_fs() -> None:
    assert parse_mountinfo(UNIFIED.splitlines()[0]) is None
