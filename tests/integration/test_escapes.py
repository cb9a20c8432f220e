"""Issue 18: no way out of a pod. Each test runs the attack from inside a pod.

Every one of them succeeded against nspod before issue 18 (run them with
NSPOD_BIN pointing at an older build to see it); SECURITY.md lists which
defence each one proves.
"""

import ctypes
import errno
import json
import os
import platform
import pty
import select
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import PodEnv

pytestmark = pytest.mark.root

# A symlink flipper an image could carry: swaps the directory `data` and the
# symlink `datalink` (-> proc) as fast as the kernel allows (renameat2(2),
# RENAME_EXCHANGE), so any path looked up twice is sometimes one, sometimes
# the other.
FLIP_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void)
{
    for (;;)
        syscall(SYS_renameat2, AT_FDCWD, "/data", AT_FDCWD, "/datalink", 2);
}
"""

# Scans every process of the pod for an executable it could open through
# /proc/PID/exe, and reports the first python it gets hold of.
SCAN_C = r"""
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void)
{
    char path[64], exe[256];
    struct dirent *e;
    DIR *d;
    ssize_t n;
    int fd;
    for (;;) {
        d = opendir("/proc");
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            snprintf(path, sizeof(path), "/proc/%s/exe", e->d_name);
            n = readlink(path, exe, sizeof(exe) - 1);
            if (n <= 0)
                continue;
            exe[n] = 0;
            if (strstr(exe, "python") == NULL)
                continue;
            fd = open(path, O_RDONLY);
            printf("got %s (fd %d)\n", exe, fd);
            fflush(stdout);
            return 0;
        }
        closedir(d);
    }
}
"""


def build(src: str, out: Path) -> None:
    cc = shutil.which("musl-gcc") or "cc"
    c = out.with_suffix(".c")
    c.write_text(src)
    subprocess.run([cc, "-static", "-O2", "-o", str(out), str(c)], check=True)
    c.unlink()


def members(e: PodEnv, pod: str) -> dict[str, dict[str, object]]:
    out = e.run("ps", pod, "--json", check=True).stdout
    return {m["name"]: m for m in json.loads(out)}


# -- 1: a forged /proc -------------------------------------------------------------


def test_proc_that_is_not_the_roots_own_directory_is_refused(pod_env: PodEnv,
                                                            rootfs: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    evil = rootfs.parent / "evil"
    shutil.copytree(rootfs, evil, symlinks=True)
    # /proc -> the pod's /dev/shm, where any member writes a last capability of 0
    (evil / "proc").rmdir()
    (evil / "proc").symlink_to("/dev/shm/p")
    r = pod_env.run("join", "p", "--", "sh", "-c",
                    "mkdir -p /dev/shm/p/sys/kernel /dev/shm/p/self"
                    " && echo 0 > /dev/shm/p/sys/kernel/cap_last_cap"
                    " && touch /dev/shm/p/self/mountinfo")
    assert r.returncode == 0, r.stderr
    # before issue 18 that member kept every capability: mount(2) worked
    r = pod_env.run("join", "--rootfs", str(evil), "p", "--", "sh", "-c",
                    "mount -t tmpfs x /tmp && echo mounted")
    assert r.returncode == 125 and "/proc of the rootfs is not a directory" in r.stderr, r
    assert "mounted" not in r.stdout
    # nor a dangling symlink, nor a file
    (evil / "proc").unlink()
    (evil / "proc").symlink_to("/nowhere")
    r = pod_env.run("join", "--rootfs", str(evil), "p", "--", "true")
    assert r.returncode == 125 and "not a directory" in r.stderr, r
    (evil / "proc").unlink()
    (evil / "proc").write_text("")
    r = pod_env.run("join", "--rootfs", str(evil), "p", "--", "true")
    assert r.returncode == 125 and "not a directory" in r.stderr, r


# -- 2: the caller's terminal --------------------------------------------------------


def test_foreground_member_cannot_type_into_the_callers_terminal(pod_env: PodEnv) -> None:
    pod_env.create("p", "--net", "none")
    script = (
        "import fcntl, os, termios\n"
        "tty_nr = open('/proc/self/stat').read().rsplit(')', 1)[1].split()[4]\n"
        "print('tty_nr', tty_nr, 'own-session', os.getsid(0) == os.getpid())\n"
        "try:\n"
        "    fcntl.ioctl(0, termios.TIOCSTI, b'#')\n"
        "    print('injected')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    master, slave = pty.openpty()

    def controlling_tty() -> None:  # the admin's shell: this pty is its terminal
        os.setsid()
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = pod_env.popen("join", "p", "--", "python3", "-c", script, stdin=slave,
                         stdout=slave, stderr=slave, preexec_fn=controlling_tty)
    os.close(slave)
    text = _read_all(master, proc)
    proc.wait(timeout=20)
    os.close(master)
    assert proc.returncode == 0, text
    assert "tty_nr 0 own-session True" in text, text
    # ENOTTY: stdin is a pipe nspod relays (podman's result); EPERM where the
    # terminal is not its controlling one; EIO where dev.tty.legacy_tiocsti=0
    assert "injected" not in text and any(
        f"refused {e}" in text for e in (errno.ENOTTY, errno.EPERM, errno.EIO)), text


def _read_all(master: int, proc: subprocess.Popen[str]) -> str:
    out = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out.decode(errors="replace")


def test_member_keeps_nothing_of_the_callers_terminal(pod_env: PodEnv) -> None:
    """A member handed the admin's terminal as its stdio left a child holding it
    after the join returned, and read what the admin typed next (a password at
    the root shell's next prompt). Without -t the member gets pipes that nspod
    relays, as podman and docker give, and nothing once it is gone."""
    pod_env.create("p", "--net", "none")
    keys = Path(f"/tmp/nspod-keys-{uuid.uuid4().hex[:8]}")
    master, slave = pty.openpty()

    def controlling_tty() -> None:  # the admin's shell: this pty is its terminal
        os.setsid()
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = pod_env.popen(
            "join", "p", "--", "sh", "-c",
            f"exec 3<&0 4>&1; (dd bs=1 count=14 <&3 >{keys} 2>/dev/null;"
            f" stty -g <&4 >>{keys} 2>/dev/null) & echo visible; exit 0",
            stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_tty)
        os.close(slave)
        slave = -1
        # still a terminal's program: its output reaches the caller
        assert "visible" in _read_all(master, proc)
        assert proc.wait(timeout=20) == 0
        try:
            os.write(master, b"root-password\n")  # the admin types at the next prompt
        except OSError:
            pass  # nobody holds the terminal any more
        time.sleep(1)
        got = keys.read_text() if keys.exists() else ""
        assert "root-password" not in got, got
        assert ":" not in got, got  # stty -g: the terminal's modes, read through stdout
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
        keys.unlink(missing_ok=True)


# -- 3: the caller's file descriptors ------------------------------------------------


def test_callers_fds_do_not_reach_the_member(pod_env: PodEnv, rootfs: Path,
                                            marker: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    secret = os.open(marker / "secret", os.O_RDONLY)
    folder = os.open(marker, os.O_RDONLY | os.O_DIRECTORY)
    try:
        r = pod_env.run("join", "p", "--", "sh", "-c",
                        f"cat /proc/self/fd/{secret}; cat /proc/self/fd/{folder}/secret;"
                        " ls /proc/self/fd", pass_fds=(secret, folder))
        assert "host secret" not in r.stdout, r
        assert sorted(r.stdout.split()) == ["0", "1", "2", "3"], r  # 3: ls's own
        # CVE-2024-21626: the leaked fd as the working directory
        r = pod_env.run("join", "-w", f"/proc/self/fd/{folder}", "p", "--", "cat", "secret",
                        pass_fds=(secret, folder))
        assert r.returncode == 125 and "host secret" not in r.stdout, r
        # the fd is closed before the member's setup (or, were it open, outside its root)
        assert ("no such file or directory" in r.stderr
                or "outside the member's root" in r.stderr), r
    finally:
        os.close(secret)
        os.close(folder)


def test_image_cannot_exec_a_host_file_through_an_fd_open_at_exec(
        pod_env: PodEnv, rootfs: Path, marker: Path) -> None:
    """CVE-2024-21626's other door: close-on-exec fds are closed only once execve
    has found its file, so a path an image wrote (the command, a symlink to it,
    a #! interpreter) through /proc/self/fd/N of a directory nspod or the caller
    still had open climbed `..` to the host's root: the member ran a host binary,
    and through /proc/PID/exe overwrote it (a root shell on the host at its next
    use)."""
    host_bin = marker / "sh"
    shutil.copy(rootfs / "bin" / "busybox", host_bin)
    before = host_bin.read_bytes()
    climb = "/".join([".."] * 16) + str(host_bin)
    for n in range(3, 24):
        (rootfs / "x" / str(n)).mkdir(parents=True)
        (rootfs / "x" / str(n) / "sh").symlink_to(f"/proc/self/fd/{n}/{climb}")
        script = rootfs / "x" / str(n) / "script"
        script.write_text(f"#!/proc/self/fd/{n}/{climb}\necho script\n")
        script.chmod(0o755)
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    # the payload: keep /proc/self/exe, outlive the host binary, then write it
    payload = ('exec 9</proc/self/exe; /bin/sh -c "sleep 0.3; echo pwned >/proc/self/fd/9"'
               " & echo ran $(readlink /proc/self/exe)")
    folder = os.open(marker, os.O_RDONLY | os.O_DIRECTORY)  # the caller's, too
    try:
        for n in range(3, 24):
            for cmd in (f"/x/{n}/sh", f"/x/{n}/script"):
                r = pod_env.run("join", "p", "--", cmd, "-c", payload, pass_fds=(folder,))
                assert "ran" not in r.stdout, (n, r)
                assert r.returncode == 127 and "not found" in r.stderr, (n, r)
    finally:
        os.close(folder)
    time.sleep(0.5)
    assert host_bin.read_bytes() == before


# -- 4: a symlink swapped in while a read-only volume is mounted ---------------------


def test_read_only_volume_stays_read_only_under_a_symlink_flipper(
        pod_env: PodEnv, rootfs: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    build(FLIP_C, rootfs / "flip")
    (rootfs / "data").mkdir()
    (rootfs / "datalink").symlink_to("proc")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    pod_env.run("join", "-d", "--name", "flip", "p", "--", "/flip", check=True)
    wrote = 0
    for _ in range(40):
        pod_env.run("join", "-v", f"{vol}:/data:ro", "p", "--", "sh", "-c",
                    "touch /data/pwn /datalink/pwn /proc/pwn 2>/dev/null; true")
        if (vol / "pwn").exists():
            wrote += 1
            break
    pod_env.run("kill", "p", "flip")
    assert wrote == 0, "a member wrote into a read-only volume"


# -- 5: read-only and nodev reach submounts ------------------------------------------


def test_read_only_and_nodev_are_recursive(pod_env: PodEnv, rootfs: Path,
                                           tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "sub", str(vol / "sub")], check=True)
    try:
        os.mknod(vol / "sub" / "zero", 0o666 | 0o020000, os.makedev(1, 5))
        pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
        r = pod_env.run("join", "-v", f"{vol}:/data:ro", "p", "--", "sh", "-c",
                        "touch /data/sub/pwn; head -c 1 /data/sub/zero | wc -c")
        assert not (vol / "sub" / "pwn").exists(), r
        assert "Read-only file system" in r.stderr, r
        assert "Permission denied" in r.stderr and r.stdout.strip() in ("", "0"), r
        r = pod_env.run("join", "-v", f"{vol}:/data", "p", "--", "sh", "-c",
                        "head -c 1 /data/sub/zero | wc -c")
        assert "Permission denied" in r.stderr and r.stdout.strip() in ("", "0"), r
    finally:
        subprocess.run(["umount", "-l", str(vol / "sub")], check=False)


# -- 7: the caller's session keyring ---------------------------------------------------


KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}  # add_key, keyctl
KEY_SPEC_SESSION_KEYRING = -3


def test_member_gets_a_fresh_session_keyring(pod_env: PodEnv) -> None:
    nums = KEYCTL.get(platform.machine())
    if nums is None:
        pytest.skip(f"no syscall numbers for {platform.machine()}")
    add_key, keyctl = nums
    pod_env.create("p", "--net", "none")
    search = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"k = libc.syscall({keyctl}, 10, {KEY_SPEC_SESSION_KEYRING}, b'user', b'nspod-t18', 0)\n"
        "print('found' if k > 0 else 'errno %d' % ctypes.get_errno())\n"
    )

    def admin_session() -> None:  # the admin's session holds a key
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(keyctl, 1, b"nspod-test")  # KEYCTL_JOIN_SESSION_KEYRING
        libc.syscall(add_key, b"user", b"nspod-t18", b"s3cret", 6, KEY_SPEC_SESSION_KEYRING)

    # the key is there for the admin's own processes
    r = subprocess.run(["python3", "-c", search], capture_output=True, text=True,
                       preexec_fn=admin_session)
    assert r.stdout.strip() == "found", r
    # seccomp refuses keyctl by default; unconfined, the member has a fresh keyring
    r = pod_env.run("join", "p", "--", "python3", "-c", search, preexec_fn=admin_session)
    assert r.stdout.strip() == f"errno {errno.EPERM}", r
    r = pod_env.run("join", "--security-opt", "seccomp=unconfined", "p", "--", "python3", "-c",
                    search, preexec_fn=admin_session)
    assert r.stdout.strip() == f"errno {errno.ENOKEY}", r


# -- 8: the logger ----------------------------------------------------------------------


def test_logger_is_no_way_out_even_with_sys_ptrace(pod_env: PodEnv, rootfs: Path,
                                                   marker: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    pod_env.run("join", "-d", "--name", "logged", "p", "--", "sleep", "60", check=True)
    find = 'for d in /proc/[0-9]*; do [ "$(cat $d/comm)" = nspod-logger ] && L=$d; done; '
    r = pod_env.run("join", "--cap-add", "SYS_PTRACE", "p", "--", "sh", "-c",
                    find + 'echo "logger $L"; ls -a $L/root/ $L/cwd/;'
                    f" cat $L/root/../../..{marker}/secret;"
                    ' echo "mounts $(cat $L/mountinfo | wc -l)"; grep -E "^(CapEff|CapBnd|'
                    'NoNewPrivs)" $L/status')
    assert "logger /proc/" in r.stdout, r
    assert "host secret" not in r.stdout
    listed = set(r.stdout.split())
    assert not listed & {"bin", "etc", "usr", "proc", "tmp"}, r.stdout
    assert "mounts 0" in r.stdout, r.stdout
    assert "CapEff:\t0000000000000000" in r.stdout, r.stdout
    assert "CapBnd:\t0000000000000000" in r.stdout, r.stdout
    assert "NoNewPrivs:\t1" in r.stdout, r.stdout
    # a member without SYS_PTRACE (and with another uid) sees no more
    r = pod_env.run("join", "--user", "65534", "p", "--", "sh", "-c",
                    find + "cat $L/mountinfo | wc -l")
    assert r.stdout.strip() in ("", "0"), r
    # and its memory is the pod's: it sits in the pod's cgroup
    pause = pod_env.inspect("p")["pid"]
    loggers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and _comm(p) == "nspod-logger" and _ppid(p) == pause]
    assert len(loggers) == 1
    cgroups = (loggers[0] / "cgroup").read_text()
    assert "/nspod/" in cgroups, cgroups
    # and it still logs
    pod_env.run("kill", "p", "logged")
    r = pod_env.run("join", "-d", "--name", "hello", "p", "--", "echo", "hi", check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pod_env.run("logs", "p", "hello").stdout == "hi\n":
            break
        time.sleep(0.1)
    assert pod_env.run("logs", "p", "hello").stdout == "hi\n"


def _comm(p: Path) -> str:
    try:
        return (p / "comm").read_text().strip()
    except OSError:
        return ""


def _ppid(p: Path) -> int:
    try:
        return int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


# -- 9: a member on the host's files beside rootfs members -----------------------------


def test_rootfs_member_cannot_reach_the_host_through_a_host_root_member(
        pod_env: PodEnv, rootfs: Path, marker: Path) -> None:
    pod_env.create("p", "--net", "none")
    pod_env.run("join", "-d", "--name", "hostside", "p", "--", "sleep", "60", check=True)
    pid = members(pod_env, "p")["hostside"]["pod_pid"]
    r = pod_env.run("join", "--rootfs", str(rootfs), "p", "--", "cat",
                    f"/proc/{pid}/root{marker}/secret")
    assert "host secret" not in r.stdout
    assert r.returncode == 125 and "--mix-roots" in r.stderr, r
    # the reverse: rootfs members first, then one on the host's files
    pod_env.create("q", "--net", "none", "--rootfs", str(rootfs))
    pod_env.run("join", "-d", "--name", "inside", "q", "--", "sleep", "60", check=True)
    r = pod_env.run("join", "--rootfs", "/", "q", "--", "true")
    assert r.returncode == 125 and "--mix-roots" in r.stderr, r
    # asked for, it is allowed
    r = pod_env.run("join", "--mix-roots", "--rootfs", "/", "q", "--", "true")
    assert r.returncode == 0, r


# -- 10: the joining interpreter --------------------------------------------------------


def test_joining_interpreter_is_not_reachable_from_the_pod(pod_env: PodEnv,
                                                           rootfs: Path) -> None:
    build(SCAN_C, rootfs / "scan")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    pod_env.run("join", "-d", "--name", "scan", "p", "--", "/scan", check=True)
    for _ in range(30):
        pod_env.run("join", "p", "--", "true", check=True)
    time.sleep(0.2)
    log = pod_env.run("logs", "p", "scan").stdout
    pod_env.run("kill", "p", "scan")
    assert "python" not in log, log


# -- 13: a numeric --user ----------------------------------------------------------------


def test_numeric_user_is_a_uid_even_when_a_name_matches(pod_env: PodEnv,
                                                         rootfs: Path) -> None:
    with open(rootfs / "etc" / "passwd", "a") as f:
        f.write("1000:x:0:0:a name made of digits:/root:/bin/sh\n")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    r = pod_env.run("join", "--user", "1000", "p", "--", "id", "-u", check=True)
    assert r.stdout.strip() == "1000"


def test_users_are_never_looked_up_in_a_host_file(pod_env: PodEnv, rootfs: Path,
                                                 marker: Path) -> None:
    """The image's /etc/passwd as /proc/self/fd/N/../../.. of a directory nspod had
    open while it set up the member: nspod, root with every capability, opened
    the host's file there (any host path: a watchdog device would have armed)
    and ran the member with what it read."""
    (marker / "passwd").write_text("evil:x:4242:4242:a host file:/host-home:/bin/sh\n")
    climb = "/".join([".."] * 16) + str(marker / "passwd")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    passwd = rootfs / "etc" / "passwd"
    folder = os.open(marker, os.O_RDONLY | os.O_DIRECTORY)  # the caller's, too
    try:
        for n in range(3, 24):
            passwd.unlink()
            passwd.symlink_to(f"/proc/self/fd/{n}/{climb}")
            r = pod_env.run("join", "--user", "evil", "p", "--", "sh", "-c", "id -u; echo $HOME",
                            pass_fds=(folder,))
            assert "4242" not in r.stdout and "/host-home" not in r.stdout, (n, r)
            assert r.returncode == 125, (n, r)
    finally:
        os.close(folder)


# -- 14: symlinks in the state directory, a FIFO as /etc/passwd ----------------------------


def test_exit_records_are_never_written_through_a_symlink(pod_env: PodEnv, rootfs: Path,
                                                          marker: Path) -> None:
    victim = marker / "victim"
    victim.write_text("precious\n")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    # pause's fd 3 is the exit records directory: with SYS_PTRACE a member reaches it
    # and plants a symlink at the next pids' records
    # (each `ln` takes a pid: the links start past the ones the loop uses)
    r = pod_env.run("join", "--cap-add", "SYS_PTRACE", "p", "--", "sh", "-c",
                    f'i=$(($$+60)); n=$((i+40)); while [ $i -lt $n ]; do i=$((i+1));'
                    f' ln -s {victim} /proc/1/fd/3/$i; done; ls /proc/1/fd/3 | wc -l')
    assert r.returncode == 0 and int(r.stdout.strip()) >= 40, r
    for _ in range(40):  # each join takes two pids: some land on a planted link
        r = pod_env.run("join", "p", "--", "true")
        assert r.returncode == 0, r
        assert victim.read_text() == "precious\n"


def test_log_is_never_written_through_a_symlink(pod_env: PodEnv, marker: Path) -> None:
    victim = marker / "victim"
    victim.write_text("precious\n")
    pod_env.create("p", "--net", "none")
    logs = pod_env.root / "pods" / "p" / "logs"
    pod_env.run("join", "p", "--", "sh", "-c",
                f"mkdir -p {logs} && ln -s {victim} {logs}/next.log", check=True)
    r = pod_env.run("join", "-d", "--name", "next", "p", "--", "echo", "member line")
    assert r.returncode == 0, r
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "member line" not in pod_env.run(
            "logs", "p", "next").stdout:
        time.sleep(0.1)
    assert victim.read_text() == "precious\n"
    assert pod_env.run("logs", "p", "next").stdout == "member line\n"


def test_fifo_as_etc_passwd_does_not_hang_join(pod_env: PodEnv, rootfs: Path) -> None:
    (rootfs / "etc" / "passwd").unlink()
    os.mkfifo(rootfs / "etc" / "passwd")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    r = pod_env.run("join", "--user", "www", "p", "--", "true", timeout=15)
    assert r.returncode == 125 and "not a regular file" in r.stderr, r
