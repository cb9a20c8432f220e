"""Issue 5: every joined process in its own root, with /proc, /dev, /sys and volumes,
and nothing of the host reachable from it."""

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PodEnv

pytestmark = pytest.mark.root

BREAKOUT_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
/* The classic chroot escape: chroot into a subdirectory, climb out of it
   with "..", chroot to where that leads, and read what is there. */
int main(void)
{
    char buf[256];
    int fd, i;
    ssize_t n;
    mkdir("/tmp/jail", 0755);
    if (chroot("/tmp/jail") != 0) { perror("chroot"); return 2; }
    for (i = 0; i < 64; i++)
        if (chdir("..") != 0) break;
    if (chroot(".") != 0) { perror("chroot ."); return 2; }
    fd = open("/etc/os-release", O_RDONLY);
    if (fd < 0) { perror("open"); return 3; }
    n = read(fd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = 0;
    fputs(buf, stdout);
    return 0;
}
"""


def run_in(e: PodEnv, pod: str, script: str, *opts: str) -> subprocess.CompletedProcess[str]:
    return e.run("join", *opts, pod, "--", "sh", "-c", script)


def test_member_sees_its_rootfs_and_the_pods_proc(pod_env: PodEnv, rootfs: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    r = run_in(pod_env, "p", "cat /etc/os-release; cat /proc/1/cmdline; echo; ls /")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "nspod-busybox"
    assert lines[1].rstrip("\0").endswith("pause")
    # / is the rootfs, entry for entry, and not the host's
    assert lines[2:] == sorted(p.name for p in rootfs.iterdir())
    assert lines[2:] != sorted(p.name for p in Path("/").iterdir())
    # the pod's processes only: pause as PID 1 and ps itself
    ps = pod_env.run("join", "p", "--", "ps", "-o", "pid,comm", check=True).stdout.splitlines()
    rows = [line.split() for line in ps[1:]]
    assert ps[0].split() == ["PID", "COMMAND"] and rows[0] == ["1", "pause"]
    assert [c for _, c in rows] == ["pause", "ps"], ps


def test_minimal_dev(pod_env: PodEnv, rootfs: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    r = run_in(pod_env, "p", "ls /dev; head -c 4 /dev/zero | wc -c; head -c 8 /dev/urandom | wc -c;"
               " echo x > /dev/null && echo null-ok; readlink /dev/fd; readlink /dev/ptmx")
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    for node in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                 "mqueue", "fd", "stdin", "stdout", "stderr"):
        assert node in out, node
    for absent in ("vda", "sda", "mem", "kmsg", "port", "nvme0", "loop0"):
        assert absent not in out, absent
    assert "null-ok" in out and "/proc/self/fd" in out and "pts/ptmx" in out
    assert out.count("4") >= 1 and "8" in out


def test_dev_shm_is_shared_pod_wide(pod_env: PodEnv, rootfs: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    assert run_in(pod_env, "p", "echo shared > /dev/shm/f").returncode == 0
    assert run_in(pod_env, "p", "cat /dev/shm/f").stdout == "shared\n"
    # a member on the host's files (--rootfs /) sees the pod's /dev/shm too, not the host's
    r = pod_env.run("join", "--mix-roots", "--rootfs", "/", "p", "--", "cat", "/dev/shm/f")
    assert r.stdout == "shared\n", r.stderr
    assert not Path("/dev/shm/f").exists() or Path("/dev/shm/f").read_text() != "shared\n"
    # and the same file is not in another pod
    pod_env.create("q", "--net", "none")
    assert pod_env.run("join", "q", "--", "cat", "/dev/shm/f").returncode != 0


def test_volumes_rw_and_ro(pod_env: PodEnv, rootfs: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in").write_text("from host\n")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs), "-v", f"{vol}:/data")
    r = run_in(pod_env, "p", "cat /data/in; echo from pod > /data/out")
    assert r.returncode == 0 and r.stdout == "from host\n", r.stderr
    assert (vol / "out").read_text() == "from pod\n"
    ro = tmp_path / "ro"
    ro.mkdir()
    r = run_in(pod_env, "p", "touch /ro/x", "-v", f"{ro}:/ro:ro")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (ro / "x").exists()
    # a target missing in the rootfs is made inside it
    r = run_in(pod_env, "p", "ls /new/deep", "-v", f"{vol}:/new/deep")
    assert (r.returncode, r.stdout.split()) == (0, ["in", "out"]), r.stderr
    assert (rootfs / "new" / "deep").is_dir()


def test_missing_volume_source_and_bad_spec(pod_env: PodEnv, rootfs: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    r = pod_env.run("join", "-v", "/no/such/path:/x", "p", "--", "true")
    assert r.returncode == 125 and "/no/such/path" in r.stderr
    r = pod_env.run("join", "-v", "relative:/x", "p", "--", "true")
    assert r.returncode == 2
    r = pod_env.run("create", "q", "-v", "/no/such:/x")
    assert r.returncode == 125 and not (pod_env.root / "pods" / "q").exists()


def test_symlink_in_rootfs_cannot_redirect_a_mount_to_the_host(
        pod_env: PodEnv, rootfs: Path, marker: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (rootfs / "evil").symlink_to(str(marker))  # absolute: means the rootfs's own /tmp/...
    (rootfs / "up").symlink_to("../../../../../../../../" + str(marker).lstrip("/"))
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    for target in ("/evil/sub", "/up/sub2"):
        run_in(pod_env, "p", "true", "-v", f"{vol}:{target}")
    assert sorted(p.name for p in marker.iterdir()) == ["secret"]  # nothing made on the host
    assert (rootfs / str(marker).lstrip("/") / "sub").is_dir()  # it went inside the rootfs
    # /etc/hosts as a symlink out of the rootfs: the pod's file lands inside, not on the host
    hosts = rootfs / "etc" / "hosts"
    if hosts.exists() or hosts.is_symlink():
        hosts.unlink()
    hosts.symlink_to(str(marker / "secret"))
    run_in(pod_env, "p", "true")
    assert (marker / "secret").read_text() == "host secret\n"


def test_no_host_file_is_reachable(pod_env: PodEnv, rootfs: Path, marker: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    pod_env.run("join", "-d", "--name", "other", "p", "--", "sleep", "60", check=True)
    secret = marker / "secret"
    script = (f"cat {secret}; cat /proc/1/root{secret}; ls /proc/1/root/; ls /proc/1/cwd/;"
              f" for p in /proc/[0-9]*; do cat $p/root{secret} $p/cwd{secret}; done;"
              " cat /proc/1/root/etc/os-release; echo done")
    r = run_in(pod_env, "p", script)
    assert "host secret" not in r.stdout
    assert r.stdout.rstrip().endswith("done")
    # other members' roots are the rootfs, never the host's
    r = run_in(pod_env, "p", "for p in /proc/[0-9]*; do cat $p/root/etc/os-release; done")
    assert set(r.stdout.split()) <= {"nspod-busybox"}


def test_chroot_breakout_is_contained(pod_env: PodEnv, rootfs: Path, tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "breakout.c").write_text(BREAKOUT_C)
    subprocess.run(["cc", "-static", "-O1", "-o", str(tools / "breakout"),
                    str(tools / "breakout.c")], check=True)
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    r = pod_env.run("join", "-v", f"{tools}:/tools:ro", "p", "--", "/tools/breakout")
    assert r.returncode == 0, r.stderr  # it ran, with CAP_SYS_CHROOT, as containers allow
    assert r.stdout.strip() == "nspod-busybox"  # and found the rootfs, not the host


def test_no_mount_shows_on_the_host_or_stays(pod_env: PodEnv, rootfs: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    def mounts() -> set[str]:
        # other runs on this machine (their own state roots) may mount meanwhile
        return {line for line in Path("/proc/self/mounts").read_text().splitlines()
                if "nspod" not in line.split()[1]
                or line.split()[1].startswith(str(pod_env.root))}

    before = mounts()
    pod_env.run("join", "-d", "--name", "m", "p", "-v", f"{vol}:/data", "--",
                "sleep", "2", check=True)
    during = mounts()
    assert during == before
    assert not [line for line in during if str(rootfs) in line]
    pod_env.run("stop", "-t", "0", "p", check=True)
    assert str(rootfs) not in Path("/proc/self/mounts").read_text()


def test_rootfs_errors(pod_env: PodEnv, rootfs: Path, tmp_path: Path) -> None:
    r = pod_env.run("create", "p", "--rootfs", str(tmp_path / "missing"))
    assert r.returncode == 125 and "no such directory" in r.stderr
    assert not (pod_env.root / "pods" / "p").exists()
    f = tmp_path / "file"
    f.write_text("x")
    r = pod_env.run("create", "p", "--rootfs", str(f))
    assert r.returncode == 125 and "not a directory" in r.stderr
    pod_env.create("p", "--net", "none")
    r = pod_env.run("join", "--rootfs", str(tmp_path / "missing"), "p", "--", "true")
    assert r.returncode == 125
    r = pod_env.run("join", "--rootfs", str(rootfs), "p", "--", "no-such-cmd")
    assert r.returncode == 127
    (rootfs / "notexec").write_text("#!/bin/sh\n")
    r = pod_env.run("join", "--rootfs", str(rootfs), "p", "--", "/notexec")
    assert r.returncode == 126


def test_join_rootfs_overrides_the_pods(pod_env: PodEnv, rootfs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(rootfs, other, symlinks=True)
    (other / "etc" / "os-release").write_text("other-root\n")
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    assert run_in(pod_env, "p", "cat /etc/os-release").stdout == "nspod-busybox\n"
    r = run_in(pod_env, "p", "cat /etc/os-release", "--rootfs", str(other))
    assert r.stdout == "other-root\n"
    # without any rootfs, a member keeps the host's files with the pod's /proc
    pod_env.create("h", "--net", "none")
    r = pod_env.run("join", "h", "--", "cat", "/proc/1/cmdline")
    assert r.stdout.split("\0")[0].endswith("pause")
    assert Path(pod_env.run("join", "h", "--", "readlink", "-f", "/etc/os-release")
                .stdout.strip()).exists()


def test_read_only_rootfs(pod_env: PodEnv, rootfs: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs), "--read-only")
    r = run_in(pod_env, "p", "touch /x 2>&1; touch /tmp/y && touch /run/z && echo writable")
    assert "Read-only file system" in r.stdout and "writable" in r.stdout
    assert not (rootfs / "x").exists() and not (rootfs / "tmp" / "y").exists()


def test_user_names_come_from_the_rootfs(pod_env: PodEnv, rootfs: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    r = pod_env.run("join", "--user", "www", "p", "--", "id")
    assert r.returncode == 0, r.stderr
    assert "uid=33(www)" in r.stdout and "gid=33(www)" in r.stdout and "100(users)" in r.stdout
    r = pod_env.run("join", "--user", "nosuchuser", "p", "--", "id")
    assert r.returncode == 125


def test_device_nodes_made_in_the_pod_cannot_be_opened(pod_env: PodEnv, rootfs: Path,
                                                       tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs), "-v", f"{vol}:/vol")
    # with CAP_MKNOD (not in the default set since issue 18) the node is useless all the same
    for where in ("/", "/tmp/", "/dev/", "/vol/"):
        r = run_in(pod_env, "p", f"mknod {where}mem2 c 1 1 && head -c 1 {where}mem2 | wc -c",
                   "--cap-add", "MKNOD")
        assert "Permission denied" in r.stderr and r.stdout.strip() in ("", "0"), (where, r)
    assert run_in(pod_env, "p", "head -c 1 /dev/zero | wc -c").stdout.strip() == "1"


def test_pause_is_no_way_out_even_with_sys_ptrace(pod_env: PodEnv, rootfs: Path,
                                                    marker: Path) -> None:
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    pod_env.run("join", "p", "--", "true", check=True)  # leaves its exit record, "3" or so
    r = pod_env.run("join", "--cap-add", "SYS_PTRACE", "p", "--", "sh", "-c",
                    "for d in /proc/1/root/ /proc/1/root/../.. /proc/1/cwd/.. /proc/1/fd/3/..;"
                    " do echo \"$d: $(ls -a $d 2>&1 | tr '\\n' ' ')\"; done;"
                    f" cat /proc/1/root/../../..{marker}/secret")
    listed = r.stdout.splitlines()
    # each is reachable with SYS_PTRACE (ls succeeds) and leads nowhere: pause's root
    # and cwd are an empty tmpfs, fd 3 the exit records, each attached nowhere
    empty = ". .. "
    assert listed[:3] == [f"/proc/1/root/: {empty}", f"/proc/1/root/../..: {empty}",
                          f"/proc/1/cwd/..: {empty}"], r
    records = listed[3].removeprefix("/proc/1/fd/3/..: . .. ").split()
    assert records and all(n.isdigit() for n in records), r
    assert len(listed) == 4 and "host secret" not in r.stdout
    assert r.stderr.endswith("No such file or directory\n"), r  # the cat


def test_rootfs_member_gets_proc_masked_and_read_only(pod_env: PodEnv, rootfs: Path) -> None:
    present = [f for f in ("timer_list", "keys", "sched_debug") if Path("/proc", f).exists()]
    pod_env.create("p", "--net", "none", "--rootfs", str(rootfs))
    reads = "for f in " + " ".join(present) + "; do echo $f $(head -c 64 /proc/$f | wc -c); done"
    r = run_in(pod_env, "p", reads + "; echo x > /proc/sys/kernel/hostname; mkdir /sys/fs/x")
    assert r.stdout == "".join(f"{f} 0\n" for f in present), r
    assert r.stderr.count("Read-only file system") == 2, r
    r = run_in(pod_env, "p", reads, "--privileged")
    assert all(int(line.split()[1]) > 0 for line in r.stdout.splitlines()), r
