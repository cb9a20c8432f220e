"""Issue 11: nspod on a host whose mounts are shared, as systemd mounts them.

systemd mounts `/` (so /run and /tmp) shared, and every service with
PrivateTmp or ProtectSystem holds a slave copy of it. Reproduced here without
a VM: a mount namespace where `/` is rshared (in peer groups of its own), the
state root on a tmpfs made rshared, and a "service" namespace that is a slave
of it. Every nspod command runs in that namespace (nsenter).
"""

import dataclasses
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NSPOD, PodEnv, is_root, new_pod_env, teardown_env

pytestmark = pytest.mark.root


def _mountinfo(pid: int) -> list[list[str]]:
    return [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]


@dataclasses.dataclass
class SystemdHost:
    env: PodEnv
    host: subprocess.Popen[bytes]  # holds the shared mount namespace
    service: subprocess.Popen[bytes]  # a slave copy of it, as a systemd service has

    def mounts_under(self, path: Path) -> list[str]:
        return [f[4] for f in _mountinfo(self.host.pid) if f[4].startswith(f"{path}/")]

    def propagation(self, path: Path) -> str:
        """The optional fields of path's mount in the host namespace (shared:N, ...)."""
        for f in _mountinfo(self.host.pid):
            if f[4] == str(path):
                return " ".join(f[6:f.index("-")])
        raise AssertionError(f"{path} is not a mount")


def _wait_mounted(pid: int, path: Path, how: str = "shared:") -> None:
    for _ in range(200):
        if any(f[4] == str(path) and how in f[6] for f in _mountinfo(pid)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never mounted in {pid}")


@pytest.fixture
def systemd_host() -> Iterator[SystemdHost]:
    if not is_root():
        pytest.skip("needs root and the real kernel")
    base = new_pod_env()
    top = base.root  # a tmpfs in the helper's namespace; the state root under it
    # private first, then shared: new peer groups of the namespace's own, so that
    # on a real systemd host (where / is shared already) nothing reaches the host
    script = ('mount --make-rshared / && mount -t tmpfs nspod-sd "$1" && '
              'mount --make-rshared "$1" && exec sleep 600')
    host = subprocess.Popen(["unshare", "-m", "--propagation", "private", "--",
                             "sh", "-c", script, "sh", str(top)])
    service = None
    try:
        _wait_mounted(host.pid, top)
        service = subprocess.Popen(["nsenter", "-t", str(host.pid), "-m", "--",
                                    "unshare", "-m", "--propagation", "slave", "sleep", "600"])
        _wait_mounted(service.pid, top, "master:")
        env = dataclasses.replace(base, root=top / "state",
                                  wrap=["nsenter", "-t", str(host.pid), "-m", "--"])
        h = SystemdHost(env, host, service)
        try:
            yield h
        finally:
            # the state root is visible in the helper's namespace only: what
            # teardown_env finds by looking at it is taken away here
            for name in env.run("ls", "-q").stdout.split():
                env.run("rm", "-f", "-t", "0", name)
            for name in env.run("network", "ls", "-q").stdout.split():
                env.run("network", "rm", "-f", name)
            left = h.mounts_under(top)
            problems = teardown_env(env)
        assert not problems, problems
        assert not left, f"mounts left: {left}"
    finally:
        for p in (service, host):
            if p is not None:
                p.kill()
                p.wait()
        shutil.rmtree(top, ignore_errors=True)


def test_core_verbs_work_when_every_mount_is_shared(systemd_host: SystemdHost) -> None:
    e = systemd_host.env
    top = e.root.parent
    before = (systemd_host.propagation(Path("/")), systemd_host.propagation(top))
    assert "shared:" in before[0] and "shared:" in before[1]
    assert e.create("a", "--net", "none") == "a"
    assert e.create("b") == "b"
    assert e.run("join", "b", "--", "hostname", check=True).stdout == "b\n"
    assert e.run("join", "b", "--", "sh", "-c", "exit 3").returncode == 3
    e.run("stop", "-t", "1", "a", check=True)
    assert "stopped" in e.run("ls", check=True).stdout.split()
    e.run("start", "a", check=True)
    assert e.run("join", "a", "--", "echo", "hi", check=True).stdout == "hi\n"
    lines = e.run("ls", check=True).stdout.splitlines()[1:]
    assert sorted((ln.split()[0], ln.split()[1]) for ln in lines) == [
        ("a", "running"), ("b", "running")]
    # nspod never touched the propagation of mounts it does not own
    assert (systemd_host.propagation(Path("/")), systemd_host.propagation(top)) == before
    e.run("rm", "-f", "a", "b", check=True)
    assert e.run("ls", "-q", check=True).stdout == ""
    assert systemd_host.mounts_under(top) == []


def test_pods_do_not_copy_each_others_pins(systemd_host: SystemdHost) -> None:
    """Mounts grow linearly: a pod's mount namespace holds no other pod's pins."""
    e = systemd_host.env
    names = [e.create("--net", "none") for _ in range(4)]
    pins = systemd_host.mounts_under(e.root)
    nsroot = f"{e.root}/ns"
    # every pin under the one mount nspod owns, private and unbindable: net and
    # mnt (pins.PINNED); the mnt pin may be missing when nspod runs in a
    # non-initial mount namespace (pins.pin), as it does here
    assert systemd_host.propagation(e.root / "ns") == "unbindable"
    assert pins[0] == nsroot
    for name in names:
        mine = {p.rsplit("/", 1)[1] for p in pins if p.startswith(f"{nsroot}/{name}/")}
        assert mine in ({"net"}, {"net", "mnt"}), (name, mine)
    for name in names:
        seen = e.run("join", name, "--", "cat", "/proc/self/mountinfo", check=True).stdout
        assert nsroot not in seen, name
    e.run("rm", "-f", *names, check=True)


def _systemd_pid1() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


def test_systemd_neither_moves_nor_kills_a_pod(pod_env: PodEnv) -> None:
    """On a real systemd host (the lab's VM): a pod made from a unit outlives the
    unit, and a daemon-reload neither moves pause nor turns the pod's controllers off."""
    if not _systemd_pid1():
        pytest.skip("systemd is not PID 1 here (make vm-test runs this)")
    unit = f"nspod-test-{pod_env.tag}"
    r = subprocess.run(["systemd-run", "--quiet", "--scope", f"--unit={unit}", "--",
                        str(NSPOD), "create", "--net", "none", "sd"],
                       env=pod_env.env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "sd\n"), r.stderr
    pod_env.pods_seen.add("sd")
    pid = pod_env.inspect("sd")["pid"]
    where = Path(f"/proc/{pid}/cgroup").read_text()
    assert "/nspod/" in where and unit not in where, where
    subprocess.run(["systemctl", "stop", f"{unit}.scope"], capture_output=True, timeout=60)
    subprocess.run(["systemctl", "daemon-reload"], check=True, timeout=120)
    assert Path(f"/proc/{pid}/cgroup").read_text() == where
    assert pod_env.run("join", "sd", "--", "true").returncode == 0
    if Path("/sys/fs/cgroup/cgroup.subtree_control").exists():  # v2
        on = Path("/sys/fs/cgroup/cgroup.subtree_control").read_text().split()
        assert {"memory", "pids", "cpu"} <= set(on), on
