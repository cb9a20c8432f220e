"""Shared test machinery.

Every integration test gets its own state root, bridge, subnet and nftables
table (the `pod_env` fixture), and cleans up even when it fails. After the
run, a session-end check fails the suite when anything leaked: a mount under
a test root, a live pause process, a test root, a veth or bridge of a test.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NSPOD = Path(os.environ.get("NSPOD_BIN", REPO / ".venv" / "bin" / "nspod"))
ROOTFS = REPO / "tests" / "rootfs"
TEST_PREFIX = "/tmp/nspod-test-"
LINK_PREFIX = "nt"  # bridges and veths made by tests start with this
# How much slower this machine is than a developer's (the lab's TCG VM: 8):
# every test's time limit (pytest-timeout) and each nspod call's are stretched
# by it, never a figure a test asserts.
SLOW = float(os.environ.get("NSPOD_SLOW", "1"))


def _state() -> dict[str, int]:
    return {"n": 0}


_counter = _state()
# Tags of the environments this run made: the session-end check looks only at
# these, so two runs on one machine (CI beside a developer's) don't see each
# other's objects as leaks.
_tags: set[str] = set()


@dataclass
class PodEnv:
    """One test's world: run nspod against its own root, bridge, subnet, table."""

    root: Path
    bridge: str
    subnet: str
    table: str
    tag: str
    pods_seen: set[str] = field(default_factory=set)
    wrap: list[str] = field(default_factory=list)  # runs nspod through this (nsenter ...)
    extra: dict[str, str] = field(default_factory=dict)  # more environment ("" unsets)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            NSPOD_ROOT=str(self.root),
            NSPOD_BRIDGE=self.bridge,
            NSPOD_SUBNET=self.subnet,
            NSPOD_NFT_TABLE=self.table,
            NSPOD_STORAGE=str(self.storage),
        )
        env.update(self.extra)
        return {k: v for k, v in env.items() if v != ""}

    @property
    def storage(self) -> Path:
        """The test's storage root (what outlives a reboot, images): in its state root."""
        return self.root / "storage"

    def run(
        self, *args: str, check: bool = False, timeout: float = 30 * SLOW, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.wrap, str(NSPOD), *args],
            env=self.env,
            capture_output=kw.pop("capture_output", True),  # type: ignore[arg-type]
            text=True,
            timeout=timeout,
            **kw,  # type: ignore[arg-type]
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"nspod {' '.join(args)} -> {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.wrap, str(NSPOD), *args], env=self.env, text=True, **kw)  # type: ignore[call-overload]

    def create(self, *args: str) -> str:
        name = self.run("create", *args, check=True).stdout.strip()
        self.pods_seen.add(name)
        return name

    def inspect(self, name: str) -> dict[str, object]:
        out = self.run("inspect", name, check=True).stdout
        return json.loads(out)[0]  # type: ignore[no-any-return]

    def pause_pids(self) -> list[int]:
        pids = []
        for rec in (self.root / "pods").glob("*/pod.json"):
            try:
                pids.append(json.loads(rec.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                continue
        for rec in (self.root / "pods").glob("*/pause.pid"):
            try:
                pids.append(int(rec.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
        return [p for p in pids if p]


def pause_tag(pid: int) -> str:
    """The pod directory a pause was started for (NSPOD_POD in its environment), or ""."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return ""
    if not env.startswith(b"NSPOD_POD="):
        return ""
    return env[len(b"NSPOD_POD="):].split(b"\0", 1)[0].decode(errors="replace")


def pauses_under(root: Path) -> list[int]:
    """Live pause processes of pods under the state root `root`."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and pause_tag(int(p.name)).startswith(str(root) + "/"):
            out += live_pids([int(p.name)])
    return out


def monitors_under(prefix: str) -> list[int]:
    """Live pod monitors (NSPOD_MONITOR=POD_DIR in their environment) of roots under prefix."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = (p / "environ").read_bytes()
        except OSError:
            continue
        if env.startswith(b"NSPOD_MONITOR=" + prefix.encode()):
            out += live_pids([int(p.name)])
    return out


def is_root() -> bool:
    return os.geteuid() == 0


def new_pod_env() -> PodEnv:
    _counter["n"] += 1
    n = _counter["n"]
    tag = uuid.uuid4().hex[:6]
    _tags.add(tag)
    root = Path(f"{TEST_PREFIX}{tag}")
    root.mkdir(parents=True)
    # 10.200.0.0/16 .. 10.255: each test gets its own /24 under 10.(200+pid%50).
    subnet = f"10.{200 + os.getpid() % 50}.{n % 250 + 1}.0/24"
    return PodEnv(root=root, bridge=f"{LINK_PREFIX}b{tag}", subnet=subnet,
                  table=f"nspod_t{tag}", tag=tag)


def live_pids(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            out.append(pid)
    return out


def cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 and v2) from mountinfo."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.split()[:1] in (["cgroup"], ["cgroup2"]):
            out.append(Path(pre.split()[4]))
    return out


def pod_cgroups(root: Path) -> list[Path]:
    """Cgroups nspod made for pods of state root `root`.

    nspod names them <mount>/nspod/<sha256(root)[:10]>-<pod> (nspod/cgroups.py).
    """
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return [d for m in cgroup_mounts() for d in (m / "nspod").glob(f"{key}-*") if d.is_dir()]


def cgroup_leaks(root: Path) -> list[str]:
    """Cgroups of root's pods still there after rm: reported, then removed if empty."""
    leaks = pod_cgroups(root)
    for d in leaks:
        try:
            d.rmdir()
        except OSError:
            pass
    return [f"cgroup left: {d}" for d in leaks]


def nft_elements(table: str, kind: str = "map") -> list[str]:
    """Elements in the maps (published ports) of table ip TABLE, or its sets (kind="set":
    the networks' bridges and subnets), if it exists."""
    proc = subprocess.run(["nft", "-j", "list", "table", "ip", table],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return []
    out = []
    for obj in json.loads(proc.stdout).get("nftables", []):
        m = obj.get(kind)
        if m:
            out += [json.dumps(el) for el in m.get("elem", [])]
    return out


FORWARD_HOLDERS = Path("/run/nspod-forward")


def network_leaks(e: PodEnv) -> list[str]:
    """What a network of e's root left after network rm: records, links, rules, holds."""
    out = []
    nets = e.root / "networks"
    if nets.exists() and any(nets.iterdir()):
        out.append(f"network records left: {sorted(p.name for p in nets.iterdir())}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for m in re.finditer(r"^\d+: ([^:@]+)", links, re.M):
        if m.group(1) == e.bridge or m.group(1).startswith(e.bridge + "-"):
            out.append(f"bridge left: {m.group(1)}")
    if subprocess.run(["nft", "list", "table", "ip", e.table], capture_output=True).returncode == 0:
        out.append(f"nft table left: {e.table} {nft_elements(e.table, 'set')}")
    key = hashlib.sha256(str(e.root.resolve()).encode()).hexdigest()[:10]
    held = sorted(p.name for p in FORWARD_HOLDERS.glob(f"{key}-*"))
    if held:
        out.append(f"ip_forward still held by: {held}")
        for p in FORWARD_HOLDERS.glob(f"{key}-*"):
            p.unlink()
    return out


def teardown_env(e: PodEnv) -> list[str]:
    """Removes everything the test made; returns what had to be removed by force."""
    problems = []
    pids = e.pause_pids()
    names = e.run("ls", "-q").stdout.split() if (e.root / "pods").exists() else []
    for name in names:
        e.run("rm", "-f", "-t", "0", name)
    # gc, if it exists, takes what a crashed create left
    e.run("gc")
    for pid in sorted(set(live_pids(pids)) | set(pauses_under(e.root))):
        problems.append(f"pause pid {pid} still alive after rm")
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for pid in monitors_under(str(e.root) + "/"):
        problems.append(f"monitor pid {pid} still alive after rm")
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith(str(e.root)):
            problems.append(f"mount left: {target}")
            subprocess.run(["umount", "-l", target], check=False)
    problems += cgroup_leaks(e.root)
    leftovers = [p.name for p in (e.root / "pods").glob("*")] if (e.root / "pods").exists() else []
    if leftovers:
        problems.append(f"pod state left: {leftovers}")
    links = subprocess.run(["ip", "-o", "link", "show", "master", e.bridge],
                           capture_output=True, text=True).stdout
    if links.strip():
        problems.append(f"veths left on {e.bridge}: {links.strip()}")
    elements = nft_elements(e.table)
    if elements:
        problems.append(f"nft map elements left in {e.table}: {elements}")
    # every network of the test goes with network rm, which must leave nothing
    nets = e.run("network", "ls", "-q").stdout.split() if (e.root / "networks").exists() else []
    for name in nets:
        r = e.run("network", "rm", "-f", name)
        if r.returncode != 0:
            problems.append(f"network rm -f {name}: {r.stderr.strip()}")
    problems += network_leaks(e)
    ports = e.root / "ports"
    if ports.exists() and any(p.suffix != ".lock" for p in ports.iterdir()):
        problems.append(f"port records left: {sorted(p.name for p in ports.iterdir())}")
    # the bridge and table are the test's own: remove them whatever happened
    subprocess.run(["ip", "link", "del", e.bridge], capture_output=True, check=False)
    for family in ("ip", "inet"):
        subprocess.run(["nft", "delete", "table", family, e.table], capture_output=True,
                       check=False)
    ipam = e.root / "ipam"
    if ipam.exists() and any(p.suffix != ".lock" for p in ipam.iterdir()):
        problems.append(f"address records left: {sorted(p.name for p in ipam.iterdir())}")
    kept = [p.name for p in (e.storage / "pods").glob("*/*") if p.is_dir()]
    if kept:
        problems.append(f"stored pods left after rm: {kept}")
    shutil.rmtree(e.root, ignore_errors=True)
    return problems


@pytest.fixture
def pod_env() -> Iterator[PodEnv]:
    if not is_root():
        pytest.skip("needs root and the real kernel")
    if not NSPOD.exists():
        pytest.fail(f"{NSPOD} missing: run make setup")
    e = new_pod_env()
    try:
        yield e
    finally:
        problems = teardown_env(e)
    if problems:
        pytest.fail("leaked: " + "; ".join(problems))


@pytest.fixture
def rootfs(tmp_path: Path) -> Iterator[Path]:
    """A private copy of the busybox rootfs (tests/rootfs, made by make rootfs)."""
    if not (ROOTFS / "bin" / "busybox").exists():
        pytest.fail(f"{ROOTFS} missing: run make rootfs")
    dest = tmp_path / "rootfs"
    shutil.copytree(ROOTFS, dest, symlinks=True)
    yield dest


@pytest.fixture
def marker() -> Iterator[Path]:
    """A file on the host that no process with a rootfs may read."""
    d = Path(f"/tmp/nspod-marker-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    (d / "secret").write_text("host secret\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test's pytest-timeout limit, stretched by NSPOD_SLOW on a slow machine."""
    if SLOW <= 1:
        return
    limit = float(config.getini("timeout") or 60) * SLOW
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails the run when anything of a test is left on the machine."""
    if not is_root():
        return
    leaks = []
    roots = tuple(f"{TEST_PREFIX}{t}" for t in _tags)
    if not roots:
        return
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith(roots):
            leaks.append(f"mount {target}")
    for d in Path("/tmp").glob("nspod-test-*"):
        if str(d).startswith(roots):
            leaks.append(f"state root {d}")
    pause = str(REPO / "nspod" / "pause")
    exe_names = {pause}
    try:
        import nspod.pausectl as sp  # the installed package's pause

        exe_names.add(str(sp.PAUSE_BIN))
    except Exception:  # noqa: BLE001 - the check still runs on what it knows
        pass
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            exe = os.readlink(p / "exe")
        except OSError:
            continue
        if exe in exe_names and live_pids([int(p.name)]):
            if pause_tag(int(p.name)).startswith(roots):
                leaks.append(f"pause process {p.name}")
    for root in roots:
        leaks += [f"monitor process {pid}" for pid in monitors_under(root + "/")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for m in re.finditer(r"^\d+: (" + LINK_PREFIX + r"[^:@]+)", links, re.M):
        if any(t in m.group(1) for t in _tags):
            leaks.append(f"link {m.group(1)}")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    for m in re.finditer(r"table \w+ (nspod_t\w+)", tables):
        if m.group(1)[len("nspod_t"):] in _tags:
            leaks.append(f"nft table {m.group(1)}")
    # networks: ip_forward holds of this run's roots, namespaces made as an "outside"
    keys = {hashlib.sha256(r.encode()).hexdigest()[:10] for r in roots}
    if FORWARD_HOLDERS.exists():
        leaks += [f"ip_forward hold {p.name}" for p in FORWARD_HOLDERS.iterdir()
                  if p.name.split("-")[0] in keys]
    netns = Path("/run/netns")
    if netns.is_dir():
        leaks += [f"netns {p.name}" for p in netns.iterdir()
                  if p.name.startswith(LINK_PREFIX) and any(t in p.name for t in _tags)]
    if leaks:
        print("\nnspod leak check FAILED: " + "; ".join(leaks), file=sys.stderr)
        session.exitstatus = 1
