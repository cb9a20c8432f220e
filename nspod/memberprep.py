"""A joining member's setup before exec, run in it: cgroup, filesystem, /proc
masks, user and capabilities, and the seccomp filter it loads (member.py's join).

Imported by join: what it needs beyond that is imported when it runs.
"""

from __future__ import annotations

import os

from nspod import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from nspod.member import JoinSpec
    from nspod.memberstate import Pod


def prepare_member(pod: Pod, spec: JoinSpec, overlay: Any = None) -> tuple[
        Callable[[], dict[str, str]], list[int], Callable[[], None], tuple[int, bytes] | None]:
    """The member's setup before exec, run in it (in its own mount namespace).

    Order matters: join the pod's cgroup first (through fds opened here, in the
    host's mounts), then the filesystem, then /proc masks, user and
    capabilities last, since they take away the rights the steps before need.
    The seccomp filter (compiled here, or read from the pod's cache) comes
    after all of them: spawn loads it just before exec.
    """
    from nspod import cgroups, etcfiles, masks, mixing, rootfs, seccomp, security

    pod_spec = pod.rec.get("spec", {})
    etc = pod.path("etc")
    if overlay is not None:  # overlay.Overlay: the image below, the member's writes above
        root = overlay.merged
    else:
        root = rootfs.check_rootfs(spec.rootfs) if spec.rootfs else pod_spec.get("rootfs")
    if root == "/":  # --rootfs /: the host's files, overriding the pod's rootfs
        root = None
    mixing.claim(pod, host=not root, mix=spec.mix_roots)
    volumes = [rootfs.Volume.from_list(v) for v in pod_spec.get("volumes", [])]
    volumes += list(spec.volumes)
    rootfs.check_volumes(volumes)
    read_only = spec.read_only or bool(pod_spec.get("read_only"))
    policy = security.resolve(security.SecurityOpts.from_spec(pod_spec),
                              spec.security or security.SecurityOpts(), spec.user)
    bpf = seccomp.member_filter(pod.dir, pod_spec.get("seccomp"), spec.seccomp,
                                policy.caps, policy.privileged)
    cgroup_fds = cgroups.open_procs(cgroups.children(pod_spec.get("cgroups", []),
                                                     cgroups.MEMBERS))
    explicit = spec.env

    def enter_cgroup() -> None:
        cgroups.enter(cgroup_fds)
        if cgroup_fds:
            # its own cgroup namespace, rooted where it now is: the member
            # sees "/", not the host's tree and the pod's limits above it
            sc.unshare(sc.CLONE_NEWCGROUP)

    def prepare() -> dict[str, str]:
        enter_cgroup()
        if root:
            # what runs after the pivot must already be imported: the new root
            # has no Python (python-prctl's C module, for capabilities)
            security.preload()
            if overlay is not None:
                overlay.mount()
            rootfs.enter(root, volumes, read_only,
                         etc if os.path.isdir(etc) else None, mask=not policy.privileged)
            if overlay is not None and spec.cwd and not read_only:
                # an image's WorkingDir need not exist in it (docker makes it);
                # made by a walk inside the root: a plain makedirs followed the
                # image's /proc/self/fd/N/.. to a directory fd still open here
                # and made the directory on the host
                _make_dir_in_root(spec.cwd)
        else:
            # the pod's /etc/hosts, hostname, resolv.conf over the host's, privately
            etcfiles.bind_into(etc, "/")
            rootfs.bind_volumes(volumes)
            if not policy.privileged:
                masks.mask_host()
        env = security.apply_security(policy, "/")
        return {k: v for k, v in env.items() if k not in explicit}  # -e wins

    return prepare, cgroup_fds, enter_cgroup, bpf


def _make_dir_in_root(path: str) -> None:
    """mkdir -p path in this process's root, never through a magic link (rootfs.resolve_in)."""
    from nspod import rootfs

    try:
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.close(rootfs.resolve_in(root, path, create="dir"))
        finally:
            os.close(root)
    except OSError:
        pass  # the chdir after says what is wrong
