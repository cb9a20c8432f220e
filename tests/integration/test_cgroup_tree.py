"""Issue 18 item 6 (and 11): limits on a pod-level cgroup, pause and members in
child cgroups, members in a cgroup namespace of their own, rm and gc remove the
whole sub-tree bottom-up, whatever a member made in it."""

import time
from pathlib import Path

import pytest
from conftest import PodEnv, pod_cgroups

pytestmark = pytest.mark.root


def pod_dirs(e: PodEnv, pod: str) -> list[Path]:
    return [Path(d) for d in e.inspect(pod)["cgroups"]]  # type: ignore[union-attr]


def test_members_see_only_their_own_cgroup(pod_env: PodEnv) -> None:
    pod = pod_env.create("--pids", "50")
    out = pod_env.run("join", pod, "--", "cat", "/proc/self/cgroup", check=True).stdout
    lines = out.split()
    assert lines and all(line.endswith(":/") for line in lines), out
    assert "nspod" not in out
    # the same from a member in a rootfs (a pod of its own: roots are not mixed)
    other = pod_env.create("--pids", "50", "--rootfs", str(Path(__file__).parent.parent / "rootfs"))
    out = pod_env.run("join", other, "--", "cat", "/proc/self/cgroup", check=True).stdout
    assert all(line.endswith(":/") for line in out.split()), out


def test_a_child_cgroup_made_by_a_member_does_not_wedge_rm(pod_env: PodEnv) -> None:
    """A privileged member (the host's files, no --rootfs) makes cgroups below
    its own and moves into them: rm -f still removes the pod and every cgroup."""
    pod = pod_env.create("--pids", "50")
    dirs = pod_dirs(pod_env, pod)
    script = ";".join(
        f"mkdir -p {d}/members/evil/deeper && echo $$ > {d}/members/evil/deeper/cgroup.procs"
        for d in dirs) + "; exec sleep 30"
    member = pod_env.popen("join", "--privileged", pod, "--", "sh", "-c", script)
    try:
        deadline = time.monotonic() + 10
        while not all((d / "members/evil/deeper/cgroup.procs").exists() and
                      (d / "members/evil/deeper/cgroup.procs").read_text().split()
                      for d in dirs):
            assert time.monotonic() < deadline, "the member never moved"
            time.sleep(0.02)
        r = pod_env.run("rm", "-f", "-t", "1", pod)
        assert (r.returncode, r.stderr) == (0, "")
    finally:
        member.kill()
        member.wait(10)
    assert pod_cgroups(pod_env.root) == []
    assert not any(d.exists() for d in dirs)


def test_gc_removes_the_subtree_of_a_dead_pod(pod_env: PodEnv) -> None:
    pod = pod_env.create()
    dirs = pod_dirs(pod_env, pod)
    for d in dirs:
        (d / "members" / "left" / "below").mkdir(parents=True)
    pid = pod_env.inspect(pod)["pid"]
    import os
    import signal

    os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    r = pod_env.run("gc")
    assert r.returncode == 0, r.stderr
    assert pod_cgroups(pod_env.root) == []
