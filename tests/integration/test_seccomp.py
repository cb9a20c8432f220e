"""The seccomp filter of members and pause, and the default limits, from inside a pod.

Each attack is run by a member as a user would run it: the default filter
refuses it, `--security-opt seccomp=unconfined` (same capabilities) lets the
kernel answer. Raw syscalls come from small C programs (c/) compiled here.
"""

import errno
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOTFS, PodEnv

pytestmark = pytest.mark.root
C_DIR = Path(__file__).resolve().parent / "c"


def build(tmp: Path, name: str) -> Path:
    """Compiles tests/integration/c/NAME.c, static (it runs in any root)."""
    out = tmp / name
    subprocess.run(["gcc", "-O1", "-Wall", "-static", "-o", str(out), str(C_DIR / f"{name}.c")],
                   check=True)
    os.chmod(tmp, 0o755)
    return out


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("seccomp"), "seccomp_probe")


def run_probe(e: PodEnv, pod: str, probe: Path, *flags: str) -> dict[str, str]:
    calls = ("keyctl", "add_key", "bpf", "perf_event_open", "unshare_user", "clone",
             "clone_user", "clone3", "vsock", "personality")
    r = e.run("join", *flags, pod, "--", str(probe), *calls, check=True)
    out = {}
    for line in r.stdout.splitlines():
        name, result = line.split()
        out[name] = result if result == "ok" else errno.errorcode[int(result)]
    assert set(out) == set(calls), r.stdout
    return out


def kernel() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert m is not None
    return int(m.group(1)), int(m.group(2))


def seccomp_status(text: str) -> tuple[int, int]:
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    return int(fields["Seccomp"]), int(fields.get("Seccomp_filters", "0"))


def test_default_filter_refuses_the_kernel_attack_surface(pod_env: PodEnv, probe: Path) -> None:
    pod = pod_env.create()
    status = pod_env.run("join", pod, "--", "cat", "/proc/self/status", check=True).stdout
    assert seccomp_status(status) == (2, 1)
    got = run_probe(pod_env, pod, probe)
    assert got == {"keyctl": "EPERM", "add_key": "EPERM", "bpf": "EPERM",
                   "perf_event_open": "EPERM", "unshare_user": "EPERM",
                   "clone": "ok", "clone_user": "EPERM",  # clone without namespace flags only
                   "clone3": "ENOSYS",  # so that libc falls back to clone, which is checked
                   "vsock": "EPERM", "personality": "EPERM"}


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86's other ABIs")
def test_default_filter_covers_i386_and_x32_calls(pod_env: PodEnv, tmp_path: Path) -> None:
    """int $0x80 and x32 numbers are checked against their own ABI's rules."""
    prog = build(tmp_path, "other_abis")
    pod = pod_env.create()

    def run(*flags: str) -> dict[str, str]:
        r = pod_env.run("join", *flags, pod, "--", str(prog), check=True)
        return {n: v if v == "ok" else errno.errorcode[int(v)]
                for n, v in (line.split() for line in r.stdout.splitlines())}

    assert run() == {"i386_keyctl": "EPERM", "i386_unshare_user": "EPERM",
                     "x32_unshare_user": "EPERM"}
    free = run("--security-opt", "seccomp=unconfined")
    assert free["i386_keyctl"] == "ok" and free["i386_unshare_user"] == "ok", free


def test_unconfined_lets_the_kernel_answer(pod_env: PodEnv, probe: Path) -> None:
    pod = pod_env.create()
    status = pod_env.run("join", "--security-opt", "seccomp=unconfined", pod, "--",
                         "cat", "/proc/self/status", check=True).stdout
    assert seccomp_status(status) == (0, 0)
    got = run_probe(pod_env, pod, probe, "--security-opt", "seccomp=unconfined")
    for call in ("keyctl", "add_key", "unshare_user", "clone", "clone_user", "clone3"):
        assert got[call] == "ok", call
    assert got["personality"] == "ok"
    assert got["perf_event_open"] == "EFAULT"
    assert got["vsock"] != "EPERM"
    if kernel() >= (6, 5):  # older kernels refuse any bpf() to the unprivileged first
        assert got["bpf"] == "EINVAL"


def test_user_namespaces_and_mounts_in_them(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    attack = ["unshare", "-U", "-r", "sh", "-c",
              "unshare -m sh -c 'mount -t tmpfs x /mnt && echo mounted'"]
    r = pod_env.run("join", pod, "--", *attack)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    assert pod_env.run("join", pod, "--", "unshare", "-U", "true").returncode != 0
    r = pod_env.run("join", "--security-opt", "seccomp=unconfined", pod, "--", *attack)
    assert (r.returncode, r.stdout) == (0, "mounted\n"), r.stderr


def test_capability_conditional_rules(pod_env: PodEnv, probe: Path) -> None:
    # docker's rules: bpf with CAP_BPF, unshare/clone namespaces with CAP_SYS_ADMIN
    pod = pod_env.create()
    got = run_probe(pod_env, pod, probe, "--cap-add", "BPF", "--cap-add", "PERFMON")
    assert got["bpf"] == "EINVAL" and got["perf_event_open"] == "EFAULT"
    assert got["unshare_user"] == "EPERM" and got["keyctl"] == "EPERM"
    got = run_probe(pod_env, pod, probe, "--cap-add", "SYS_ADMIN")
    assert got["unshare_user"] == got["clone_user"] == got["clone3"] == "ok"
    r = pod_env.run("join", "--cap-add", "SYS_ADMIN", pod, "--", "unshare", "-m", "sh", "-c",
                    "mount -t tmpfs x /mnt && echo mounted")
    assert (r.returncode, r.stdout) == (0, "mounted\n"), r.stderr


def test_privileged_is_unconfined_unless_a_profile_is_named(pod_env: PodEnv,
                                                            tmp_path: Path) -> None:
    pod = pod_env.create()
    r = pod_env.run("join", "--privileged", pod, "--", "cat", "/proc/self/status", check=True)
    assert seccomp_status(r.stdout) == (0, 0)
    profile = tmp_path / "allow.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    r = pod_env.run("join", "--privileged", "--security-opt", f"seccomp={profile}", pod, "--",
                    "cat", "/proc/self/status", check=True)
    assert seccomp_status(r.stdout) == (2, 1)
    assert pod_env.inspect(pod_env.create("--privileged"))["security"]["seccomp"] == "unconfined"  # type: ignore[index]


def no_mkdir_profile(tmp_path: Path) -> Path:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    return profile


def test_a_user_profile_on_join(pod_env: PodEnv, tmp_path: Path) -> None:
    pod = pod_env.create()
    profile = no_mkdir_profile(tmp_path)
    target = tmp_path / "made"
    for _ in range(2):  # the second join reads the compiled filter back
        r = pod_env.run("join", "--security-opt", f"seccomp={profile}", pod, "--",
                        "mkdir", str(target))
        assert r.returncode == 1 and "Operation not permitted" in r.stderr
        assert not target.exists()
    # what the profile does not name is allowed, keyctl included
    r = pod_env.run("join", "--security-opt", f"seccomp={profile}", pod, "--",
                    "sh", "-c", f"touch {target} && echo ok")
    assert r.stdout == "ok\n"
    pod_env.run("join", pod, "--", "mkdir", str(tmp_path / "d"), check=True)


def test_the_filter_comes_after_nspods_own_setup(pod_env: PodEnv, tmp_path: Path) -> None:
    # what nspod itself calls to set a member up (setns, unshare, mount, pivot_root,
    # capabilities, no_new_privs, chdir) is refused by this profile: a member still starts
    profile = tmp_path / "strict.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["setns", "unshare", "mount", "umount2", "pivot_root", "capset",
                                "prctl", "chdir", "setgroups", "setuid", "setgid"],
                      "action": "SCMP_ACT_ERRNO"}],
    }))
    pod = pod_env.create("--security-opt", f"seccomp={profile}")
    r = pod_env.run("join", "--rootfs", str(ROOTFS), "-w", "/bin", "-u", "1:1", pod, "--",
                    "sh", "-c", "pwd; id -u; cd /; mount -t tmpfs x /tmp", timeout=30)
    assert r.stdout == "/bin\n1\n" and r.returncode != 0, r.stderr
    assert "can't cd to /: Operation not permitted" in r.stderr


def test_a_user_profile_on_create_is_kept_by_the_pod(pod_env: PodEnv, tmp_path: Path) -> None:
    profile = no_mkdir_profile(tmp_path)
    pod = pod_env.create("--security-opt", f"seccomp={profile}")
    assert pod_env.inspect(pod)["security"]["seccomp"] == str(profile)  # type: ignore[index]
    profile.unlink()  # the pod copied it at create
    r = pod_env.run("join", pod, "--", "mkdir", str(tmp_path / "d"))
    assert r.returncode == 1 and "Operation not permitted" in r.stderr
    # a join may choose otherwise
    pod_env.run("join", "--security-opt", "seccomp=unconfined", pod, "--",
                "mkdir", str(tmp_path / "d"), check=True)
    pod_env.run("stop", "-t", "0", pod, check=True)
    pod_env.run("start", pod, check=True)
    r = pod_env.run("join", pod, "--", "mkdir", str(tmp_path / "e"))
    assert r.returncode == 1 and "Operation not permitted" in r.stderr


def test_bad_profiles_are_refused(pod_env: PodEnv, tmp_path: Path) -> None:
    pod = pod_env.create()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"defaultAction": "SCMP_ACT_FROB"}))
    r = pod_env.run("join", "--security-opt", f"seccomp={bad}", pod, "--", "true")
    assert (r.returncode, r.stderr) == (
        125, f"nspod: seccomp profile {bad}: action 'SCMP_ACT_FROB': unknown "
        "(SCMP_ACT_ERRNO, SCMP_ACT_ALLOW, ...)\n")
    missing = tmp_path / "missing.json"
    r = pod_env.run("join", "--security-opt", f"seccomp={missing}", pod, "--", "true")
    assert (r.returncode, r.stderr) == (
        125, f"nspod: seccomp profile {missing}: no such file or directory\n")
    r = pod_env.run("create", "--security-opt", f"seccomp={bad}", "badpod")
    assert r.returncode == 125 and r.stderr.startswith(f"nspod: seccomp profile {bad}: ")
    assert not (pod_env.root / "pods" / "badpod").exists()
    r = pod_env.run("join", "--security-opt", "apparmor=unconfined", pod, "--", "true")
    assert r.returncode == 2 and "seccomp=unconfined" in r.stderr


def test_inspect_shows_the_profile_in_force(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    assert pod_env.inspect(pod)["security"]["seccomp"] == "default"  # type: ignore[index]
    pod = pod_env.create("--security-opt", "seccomp=unconfined")
    assert pod_env.inspect(pod)["security"]["seccomp"] == "unconfined"  # type: ignore[index]
    r = pod_env.run("join", pod, "--", "cat", "/proc/self/status", check=True)
    assert seccomp_status(r.stdout) == (0, 0)


def test_pause_runs_under_its_own_filter(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    pid = pod_env.inspect(pod)["pid"]
    assert seccomp_status(Path(f"/proc/{pid}/status").read_text()) == (2, 1)
    # and still reaps and records what it reaps
    r = pod_env.run("join", pod, "--", "sh", "-c", "exit 7")
    assert r.returncode == 7  # join read it from the exit record pause wrote
    pod_env.run("join", "-d", pod, "--", "sh", "-c", "exit 8", check=True)
    for _ in range(100):
        members = json.loads(pod_env.run("ps", pod, "--json", check=True).stdout)
        if [m["state"] for m in members] == ["exited (8)"]:
            break
        time.sleep(0.05)
    assert [m["state"] for m in members] == ["exited (8)"]


def test_the_logger_runs_under_its_own_filter(pod_env: PodEnv) -> None:
    pod = pod_env.create("--net", "none")
    pod_env.run("join", "-d", "--name", "talk", pod, "--", "sh", "-c", "echo hi; sleep 60",
                check=True)
    pause = pod_env.inspect(pod)["pid"]
    loggers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and (p / "comm").read_text().strip() == "nspod-logger"
               and (p / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(pause)]
    assert len(loggers) == 1
    assert seccomp_status((loggers[0] / "status").read_text()) == (2, 1)
    # and still logs, rotating as it goes (rename, a new file made fd 1)
    pod_env.run("join", "-d", "--name", "much", "--log-max-size", "32k", pod, "--", "sh", "-c",
                "i=0; while [ $i -lt 4000 ]; do echo line $i; i=$((i+1)); done", check=True)
    assert pod_env.run("wait", "--timeout", "20", pod, "much", check=True).stdout == "0\n"
    out = pod_env.run("logs", pod, "much", check=True).stdout.splitlines()
    assert out[-1] == "line 3999" and len(out) < 4000
    assert pod_env.run("logs", pod, "talk", check=True).stdout == "hi\n"


def test_ordinary_workloads_run_under_the_default_filter(pod_env: PodEnv,
                                                         tmp_path: Path) -> None:
    pod = pod_env.create("--net", "none")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the app\n")
    os.chmod(tmp_path, 0o755)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/nginx.err;\n"
        "events {}\n"
        "http { access_log off; server { listen 127.0.0.1:18080; "
        "location / { proxy_pass http://127.0.0.1:18081; } } }\n")
    pod_env.run("join", "-d", "--name", "app", pod, "--", "python3", "-m", "http.server",
                "--bind", "127.0.0.1", "-d", str(site), "18081", check=True)
    pod_env.run("join", "-d", "--name", "web", pod, "--", "nginx", "-c", str(conf), check=True)
    deadline = time.monotonic() + 15
    while True:
        r = pod_env.run("join", pod, "--", "curl", "-sf", "http://127.0.0.1:18080/")
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.stdout == "hello from the app\n", r.stderr
    r = pod_env.run("join", pod, "--", "ps", "-eo", "comm=", check=True)
    assert {"pause", "python3", "nginx", "ps"} <= set(r.stdout.split())
    running = [m for m in json.loads(pod_env.run("ps", pod, "--json", check=True).stdout)
               if m["state"] == "running"]
    assert {m["name"] for m in running} == {"app", "web"}
    for m in running:
        status = Path(f"/proc/{m['pid']}/status").read_text()
        assert seccomp_status(status) == (2, 1), m["name"]
    # threads (clone3 falls back to clone) and a busybox shell in its own root
    r = pod_env.run("join", pod, "--", "python3", "-c",
                    "import threading; t = threading.Thread(target=print, args=('thread',)); "
                    "t.start(); t.join()", check=True)
    assert r.stdout == "thread\n"
    r = pod_env.run("join", "--mix-roots", "--rootfs", str(ROOTFS), pod, "--", "sh", "-c",
                    "echo $((6 * 7)); ls /bin/busybox; grep Seccomp: /proc/self/status",
                    check=True)
    assert r.stdout.split() == ["42", "/bin/busybox", "Seccomp:", "2"]


def test_fork_loop_stops_at_the_default_pids_limit(pod_env: PodEnv, tmp_path: Path) -> None:
    forker = build(tmp_path, "forker")
    pod = pod_env.create()
    assert pod_env.inspect(pod)["limits"]["pids"] == 2048  # type: ignore[index]
    r = pod_env.run("join", pod, "--", str(forker), check=True, timeout=120)
    assert r.stdout == "2046 EAGAIN\n"  # 2048 - pause - the forker


def test_pids_unlimited(pod_env: PodEnv) -> None:
    for value in ("0", "-1"):
        pod = pod_env.create("--pids", value)
        info = pod_env.inspect(pod)
        assert info["limits"]["pids"] is None  # type: ignore[index]
        pids_max = [Path(d) / "pids.max" for d in info["cgroups"]  # type: ignore[attr-defined]
                    if (Path(d) / "pids.max").exists()]
        assert pids_max and all(p.read_text() == "max\n" for p in pids_max)
    r = pod_env.run("create", "--pids", "-2", "p")
    assert r.returncode == 2


def test_dev_shm_is_64m_unless_told(pod_env: PodEnv) -> None:
    write = ["sh", "-c", "dd if=/dev/zero of=/dev/shm/big bs=1M count=100 2>/dev/null; "
             "echo $?; du -m /dev/shm/big | cut -f1"]
    pod = pod_env.create()
    assert pod_env.inspect(pod)["limits"]["shm_size"] == 64 << 20  # type: ignore[index]
    r = pod_env.run("join", pod, "--", *write, check=True)
    assert r.stdout.split() == ["1", "64"]
    pod = pod_env.create("--shm-size", "128M")
    r = pod_env.run("join", pod, "--", *write, check=True)
    assert r.stdout.split() == ["0", "100"]
    r = pod_env.run("create", "--shm-size", "lots", "p")
    assert r.returncode == 2
