"""What a joined process may do: capabilities, no_new_privs, --user, masked /proc.

Each test reads what the member itself sees (/proc/self/status, id, the
errors of mount and writes), as a user would.
"""

import grp
import pwd
from pathlib import Path

import pytest
from conftest import PodEnv

pytestmark = pytest.mark.root

DEFAULT_MASK = 0x800405FB  # CHOWN ... SETFCAP: what podman shows for root (issue 18)


def own_bounding() -> int:
    """nspod cannot give more than it has: the test's own bounding set."""
    return status_caps(Path("/proc/self/status").read_text())["CapBnd"]


def status_caps(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.startswith("Cap") or key == "NoNewPrivs":
            out[key] = int(val.strip(), 16 if key.startswith("Cap") else 10)
    return out


def member_caps(e: PodEnv, pod: str, *flags: str) -> dict[str, int]:
    r = e.run("join", *flags, pod, "--", "cat", "/proc/self/status", check=True)
    return status_caps(r.stdout)


def test_member_keeps_only_the_default_set(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    caps = member_caps(pod_env, pod)
    want = DEFAULT_MASK & own_bounding()
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapInh"] == caps["CapBnd"] == want
    assert caps["CapAmb"] == 0
    assert caps["NoNewPrivs"] == 1


def test_mount_refused(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    r = pod_env.run("join", pod, "--", "mount", "-t", "tmpfs", "x", "/mnt")
    assert r.returncode != 0
    assert "permission denied" in r.stderr.lower()


def test_privileged_gets_everything_and_may_mount(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    caps = member_caps(pod_env, pod, "--privileged")
    assert caps["CapEff"] == caps["CapBnd"] == own_bounding()
    assert caps["NoNewPrivs"] == 0
    # the mount lands in the member's own mount namespace and goes with it
    r = pod_env.run("join", "--privileged", pod, "--", "sh", "-c",
                    "mount -t tmpfs x /mnt && grep ' /mnt tmpfs' /proc/self/mounts")
    assert r.returncode == 0, r.stderr
    assert " /mnt tmpfs" not in Path("/proc/self/mounts").read_text()


def test_cap_add_and_drop(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    net_admin, chown = 1 << 12, 1 << 0
    caps = member_caps(pod_env, pod, "--cap-add", "NET_ADMIN", "--cap-drop", "cap_chown")
    assert caps["CapEff"] == caps["CapBnd"] == (DEFAULT_MASK | net_admin) & ~chown & own_bounding()
    # NET_ADMIN is really usable: the pod's own loopback can be reconfigured
    r = pod_env.run("join", "--cap-add", "NET_ADMIN", pod, "--", "ip", "link", "set", "lo",
                    "mtu", "1400")
    assert r.returncode == 0, r.stderr
    r = pod_env.run("join", pod, "--", "ip", "link", "set", "lo", "mtu", "1500")
    assert r.returncode != 0 and "not permitted" in r.stderr


def test_cap_drop_all(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    caps = member_caps(pod_env, pod, "--cap-drop", "ALL")
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == caps["CapInh"] == 0


def test_pod_defaults_and_join_flags_on_top(pod_env: PodEnv) -> None:
    pod = pod_env.create("--cap-drop", "ALL")
    assert member_caps(pod_env, pod)["CapEff"] == 0
    assert member_caps(pod_env, pod, "--cap-add", "NET_RAW")["CapEff"] == 1 << 13
    assert member_caps(pod_env, pod, "--privileged")["CapEff"] == own_bounding()
    priv = pod_env.create("--privileged")
    caps = member_caps(pod_env, priv)
    assert caps["CapEff"] == own_bounding() and caps["NoNewPrivs"] == 0


def test_unknown_cap_is_a_usage_error(pod_env: PodEnv) -> None:
    r = pod_env.run("create", "--cap-add", "FLY", "p")
    assert (r.returncode, r.stderr) == (2, "nspod: create: invalid value for --cap-add: "
                                           "unknown capability 'FLY'\n")
    assert not (pod_env.root / "pods" / "p").exists()


def test_raw_socket_and_port_80_per_default_set(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    script = (
        "import socket\n"
        "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 80)); print('ok')\n"
    )
    r = pod_env.run("join", "--cap-add", "NET_RAW", pod, "--", "python3", "-c", script)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    # NET_RAW is not in the default set (podman's eleven)
    r = pod_env.run("join", pod, "--", "python3", "-c", script)
    assert r.returncode == 1 and "PermissionError" in r.stderr
    r = pod_env.run("join", "--cap-drop", "NET_BIND_SERVICE", pod, "--", "python3", "-c",
                    script.replace("socket.socket(socket.AF_INET, socket.SOCK_RAW", "(0"))
    assert r.returncode == 1 and "PermissionError" in r.stderr


def test_numeric_user(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    r = pod_env.run("join", "--user", "4321:8765", pod, "--", "sh", "-c",
                    'id -u; id -g; id -G; echo "$HOME";'
                    ' grep -E "^Cap(Eff|Prm|Bnd)" /proc/self/status',
                    check=True)
    lines = r.stdout.splitlines()
    assert lines[:4] == ["4321", "8765", "8765", "/"]
    caps = status_caps("\n".join(lines[4:]))
    # runc's semantic for a non-root user: the bounding set only
    assert caps == {"CapEff": 0, "CapPrm": 0, "CapBnd": DEFAULT_MASK & own_bounding()}


def test_user_name_from_the_members_root(pod_env: PodEnv) -> None:
    # no --rootfs: the member's root is the host's, so are its passwd and group
    nobody = pwd.getpwnam("nobody")
    groups = sorted({nobody.pw_gid} | {g.gr_gid for g in grp.getgrall() if "nobody" in g.gr_mem})
    pod = pod_env.create()
    r = pod_env.run("join", "--user", "nobody", pod, "--", "sh", "-c",
                    'id -u; id -g; id -G; echo "$HOME"', check=True)
    uid, gid, gids, home = r.stdout.splitlines()
    assert (int(uid), int(gid), home) == (nobody.pw_uid, nobody.pw_gid, nobody.pw_dir)
    assert sorted(int(g) for g in gids.split()) == groups
    r = pod_env.run("join", "-e", "HOME=/tmp", "--user", f"nobody:{grp.getgrgid(0).gr_name}",
                    pod, "--", "sh", "-c", 'id -g; echo "$HOME"', check=True)
    assert r.stdout == "0\n/tmp\n"


def test_unknown_user_fails_with_125(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    r = pod_env.run("join", "--user", "no-such-user-x", pod, "--", "true")
    assert (r.returncode, r.stderr) == (125, "nspod: user 'no-such-user-x': no such user in "
                                             "/etc/passwd\n")
    r = pod_env.run("join", "--user", "0:no-such-group-x", pod, "--", "true")
    assert r.returncode == 125 and "no such group" in r.stderr


MASKED_FILES = ("kcore", "keys", "timer_list", "sched_debug", "latency_stats", "timer_stats")


def test_proc_masked(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    present = [f for f in MASKED_FILES if Path("/proc", f).exists() and f != "kcore"]
    assert present, "no maskable /proc file on this kernel"
    script = "for f in " + " ".join(present) + "; do echo $f $(head -c 64 /proc/$f | wc -c); done"
    seen = pod_env.run("join", "--privileged", pod, "--", "sh", "-c", script, check=True).stdout
    assert all(int(line.split()[1]) > 0 for line in seen.splitlines()), seen  # unmasked: data
    masked = pod_env.run("join", pod, "--", "sh", "-c", script, check=True).stdout
    assert masked == "".join(f"{f} 0\n" for f in present)
    r = pod_env.run("join", pod, "--", "sh", "-c", "head -c 1 /proc/kcore | wc -c", check=True)
    assert r.stdout.strip() == "0"
    if Path("/proc/acpi").is_dir():
        r = pod_env.run("join", pod, "--", "ls", "-A", "/proc/acpi", check=True)
        assert r.stdout == ""


def test_proc_knobs_read_only(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    r = pod_env.run("join", pod, "--", "sh", "-c", "echo hacked > /proc/sys/kernel/hostname")
    assert r.returncode != 0 and "read-only file system" in r.stderr.lower()
    if Path("/proc/sysrq-trigger").exists():  # not on kernels without CONFIG_MAGIC_SYSRQ
        # "h" only prints help to the kernel log, should the mask ever fail
        r = pod_env.run("join", pod, "--", "sh", "-c", "echo h > /proc/sysrq-trigger")
        assert r.returncode != 0 and "read-only file system" in r.stderr.lower()
    r = pod_env.run("join", pod, "--", "cat", "/proc/sys/kernel/hostname", check=True)
    assert r.stdout.strip() == pod  # still readable, unchanged


def test_sys_read_only_submounts_included(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    cgroup = Path(pod_env.inspect(pod)["cgroups"][0])  # type: ignore[index]
    probe = cgroup / "probe"  # harmless should it work: a child cgroup, removed below
    try:
        r = pod_env.run("join", pod, "--", "mkdir", str(probe))
        assert r.returncode != 0 and "read-only file system" in r.stderr.lower()
        r = pod_env.run("join", "--privileged", pod, "--", "mkdir", str(probe))
        assert r.returncode == 0, r.stderr
    finally:
        if probe.exists():
            probe.rmdir()
