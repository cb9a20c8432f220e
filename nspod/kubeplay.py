"""kube play, down and generate: a kubeparse plan made into pods, and back.

play, per pod: check what can be checked first (root filesystems, hostPath
volumes, commands), create the pod (ports, summed limits, hostname, network),
make its volumes under the pod's directory (so rm and gc take them), run the
init containers one after another to completion, then join every container
detached, named after it. Any failure removes every pod this play made.

    ROOT/pods/POD/kube.json        the manifest the pod was played from (down, generate)
    ROOT/pods/POD/volumes/NAME     an emptyDir (medium Memory: a tmpfs mounted
                                   in the pod's mount namespace) or a configMap's files
    ROOT/pods/POD/subpaths/C-I     container C's mount I with a subPath: what it
                                   resolved to, bound there in the pod's namespace
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from nspod import lean, member, pins
from nspod import syscalls as sc
from nspod.errors import NspodError, UsageError, os_reason
from nspod.kubegen import ROOTFS_ANNOTATION, config_maps, describe, dump, render
from nspod.kubemodel import Container, Manifest, PodPlan, Volume
from nspod.security import SecurityOpts
from nspod.store import Store

KUBE_RECORD = "kube.json"  # in the pod's directory: what play made it from


class InitFailed(NspodError):
    """An init container did not succeed: the play stops with its status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def play(root: str, manifest: Manifest, images: dict[str, str],
         tls_verify: bool = True) -> list[str]:
    """Makes every pod of the manifest; all or nothing. Returns their names."""
    from nspod import pod

    store = Store(root)
    made: list[str] = []
    try:
        for plan in manifest.pods:
            try:
                _play_pod(store, plan, images, tls_verify, made)
            except NspodError as e:
                if not str(e).startswith(f'pod "{plan.name}"'):
                    e.args = (f'pod "{plan.name}": {e}',)  # which pod of the file failed
                raise
    except BaseException:
        for name in reversed(made):
            try:
                pod.remove_pod(store, name, force=True, timeout=0)
            except NspodError:
                pass
        raise
    return made


class Root:
    """Where a container runs: a directory (`/`: the host's files) or a stored image."""

    __slots__ = ("rootfs", "image", "argv")

    def __init__(self, rootfs: str | None, image: str | None, argv: list[str]) -> None:
        self.rootfs = rootfs
        self.image = image
        self.argv = argv


def _root_of(plan: PodPlan, c: Container, images: dict[str, str], tls_verify: bool) -> Root:
    """A --rootfs mapping of c's image first, then its rootfs.nspod.io annotation, then
    the image from nspod's store (pulled per imagePullPolicy); no image: the host's."""
    from nspod import rootfs

    where = f'pod "{plan.name}": container "{c.name}"'
    annotation = dict(plan.annotations).get(ROOTFS_ANNOTATION + c.name)
    if c.image is not None and c.image in images:
        path = images[c.image]
    elif annotation is not None:
        path = annotation
    elif c.image is None:
        path = "/"
    else:
        from nspod import image

        img = image.ensure(image.ImageStore(), c.image, c.pull_policy(), tls_verify)
        argv = image.command(img.config, *c.expanded())
        if not argv:
            raise UsageError(f"{where}: image {c.image} has no Entrypoint or Cmd: give a "
                             "command")
        return Root(None, c.image, argv)
    if not c.argv():
        raise UsageError(f"{where}: no command or args (it runs in a directory, which has "
                         "no entrypoint)")
    if path == "/":
        return Root("/", None, c.argv())
    try:
        return Root(rootfs.check_rootfs(path), None, c.argv())
    except NspodError as e:
        raise NspodError(f"{where}: {e}") from None


def _check_host_paths(plan: PodPlan) -> None:
    for v in plan.volumes:
        if v.kind != "hostPath":
            continue
        assert v.path is not None
        what = f'pod "{plan.name}": volume "{v.name}": hostPath {v.path}'
        try:
            if v.path_type == "DirectoryOrCreate":
                os.makedirs(v.path, 0o755, exist_ok=True)
            elif v.path_type == "FileOrCreate" and not os.path.exists(v.path):
                os.makedirs(os.path.dirname(v.path), 0o755, exist_ok=True)
                os.close(os.open(v.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            st = os.stat(v.path)
        except OSError as e:
            raise NspodError(f"{what}: {os_reason(e)}") from None
        import stat

        if v.path_type.startswith("Directory") and not stat.S_ISDIR(st.st_mode):
            raise NspodError(f"{what}: not a directory")
        if v.path_type.startswith("File") and not stat.S_ISREG(st.st_mode):
            raise NspodError(f"{what}: not a file")


def _play_pod(store: Store, plan: PodPlan, images: dict[str, str], tls_verify: bool,
              made: list[str]) -> None:
    from nspod import pod, portspec
    from nspod.limits import Limits

    # everything that can fail without making anything, first (images are pulled here)
    roots = {c.name: _root_of(plan, c, images, tls_verify)
             for c in (*plan.init_containers, *plan.containers)}
    _check_host_paths(plan)
    ports = tuple(portspec.Publish(p.host_port, p.container_port, p.protocol.lower(), p.host_ip)
                  for c in plan.containers for p in c.ports
                  if p.host_port and not plan.host_network)
    annotated = {n: r.rootfs for n, r in roots.items() if r.rootfs is not None}
    kube = {"pod": render(plan, annotated), "configMaps": config_maps(plan),
            "source": plan.source}
    spec = pod.CreateSpec(name=plan.name, hostname=plan.hostname,
                          net="host" if plan.host_network else "bridge", ports=ports,
                          limits=Limits(memory=plan.memory(), cpus=plan.cpus()))
    pod.create(store, spec)
    made.append(plan.name)
    pdir = store.pod_dir(plan.name)
    # root's only: a manifest's env values may be secrets (a member's are, in /proc)
    fd = os.open(os.path.join(pdir, KUBE_RECORD),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(kube).encode())
    finally:
        os.close(fd)
    sources = {v.name: _make_volume(pdir, v) for v in plan.volumes}
    kinds = {v.name: v.kind for v in plan.volumes}
    for c in plan.init_containers:
        _join(store.root, plan, c, roots[c.name], sources, kinds)
        state, code = _wait(store.root, plan.name, c.name)
        if state != "exited (0)":
            raise InitFailed(f'pod "{plan.name}": init container "{c.name}" {state}', code)
    for c in plan.containers:
        _join(store.root, plan, c, roots[c.name], sources, kinds)


def _make_volume(pdir: str, v: Volume) -> str:
    """The host path behind volume v, made for the pod."""
    if v.kind == "hostPath":
        assert v.path is not None
        return v.path
    vdir = os.path.join(pdir, "volumes", v.name)
    os.makedirs(vdir, 0o755)
    if v.kind == "emptyDir":
        os.chmod(vdir, 0o777)  # as Kubernetes makes it: any user of the pod writes there
        if v.medium == "Memory":
            size = f",size={v.size_limit}" if v.size_limit else ""
            _mount_in_pod(pins.ns_file(pdir, "mnt"), vdir, f"mode=1777{size}")
        return vdir
    for rel, text in v.files:
        path = os.path.join(vdir, rel)
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, text.encode())
            os.fchmod(fd, v.default_mode)
        finally:
            os.close(fd)
    return vdir


def _mount_in_pod(nsfile: str, target: str, data: str) -> None:
    """A tmpfs at target in the pod's mount namespace: every member's copy of it
    has it, the host never does, and it goes with the namespace."""
    from nspod import spawn

    spawn.in_mount_namespace(
        nsfile, lambda: sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, data),
        f"emptyDir {target}: tmpfs in the pod's mount namespace")


def _sub_path(pdir: str, base: str, sub: str, directory: bool, slot: str) -> str:
    """base/sub, resolved inside base and pinned: the path a member binds from.

    In the pod's mount namespace (where a Memory emptyDir's tmpfs is), sub is
    resolved from base's top with symlinks followed as if base were `/`, so a
    symlink a member planted there cannot lead out; what it resolved to is
    bind-mounted by its fd onto pods/POD/subpaths/SLOT, so swapping a path
    component afterwards changes nothing (what kubelet does since
    CVE-2017-1002101). The mount lives in the pod's namespace and goes with it.
    """
    import stat

    from nspod import rootfs, spawn

    target = os.path.join(pdir, "subpaths", slot)
    os.makedirs(os.path.dirname(target), 0o700, exist_ok=True)

    def pin() -> None:
        # no /proc/self/fd here: the pod's namespace has the pod's /proc, where
        # this child (in the host's PID namespace) has no entry; so bind from
        # the resolved directory as cwd (a file: from its resolved parent)
        top = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        fd = rootfs.resolve_in(top, sub, create="dir" if directory else None)
        want = os.fstat(fd)
        if stat.S_ISDIR(want.st_mode):
            os.mkdir(target, 0o755)
            os.fchdir(fd)
            source = "."
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            os.fchdir(rootfs.resolve_in(top, os.path.dirname(sub)))
            source = os.path.basename(sub)
        sc.mount(source, target, None, sc.MS_BIND)
        got = os.stat(target)
        if (got.st_dev, got.st_ino) != (want.st_dev, want.st_ino):
            # a path component was swapped between resolving and binding
            sc.umount2(target, sc.MNT_DETACH)
            raise NspodError("changed while it was bound: refused")

    spawn.in_mount_namespace(pins.ns_file(pdir, "mnt"), pin, f"subPath {sub}")
    return target


def _join(root: str, plan: PodPlan, c: Container, where: Root,
          sources: dict[str, str], kinds: dict[str, str]) -> None:
    from nspod.rootfs import Volume as Bind

    binds = []
    pdir = os.path.join(root, "pods", plan.name)
    for i, m in enumerate(c.mounts):
        src = sources[m.name]
        if m.sub_path:
            try:
                src = _sub_path(pdir, src, m.sub_path, kinds[m.name] != "configMap",
                                f"{c.name}-{i}")
            except NspodError as e:
                raise NspodError(f'pod "{plan.name}": container "{c.name}": {e}') from None
        binds.append(Bind(src, m.mount_path, m.read_only or kinds[m.name] == "configMap"))
    user = None
    if c.run_as_user is not None or c.run_as_group is not None:
        user = str(c.run_as_user or 0)
        if c.run_as_group is not None:
            user += f":{c.run_as_group}"
    spec = member.JoinSpec(pod=plan.name, argv=where.argv, env=dict(c.env), cwd=c.working_dir,
                           detach=True, name=c.name,
                           security=SecurityOpts(c.cap_add, c.cap_drop, c.privileged),
                           user=user, rootfs=where.rootfs, volumes=tuple(binds),
                           read_only=c.read_only_root, image=where.image, pull="never",
                           seccomp=c.seccomp)
    member.join(root, spec)


def _wait(root: str, pod_name: str, name: str) -> tuple[str, int]:
    """Waits for member `name` to end: its state (`exited (0)`, `killed (SIGKILL)`) and
    exit code, from the record pause writes once it has reaped it."""
    from nspod import exits

    pod = member.Pod(root, pod_name)
    pod_pid = lean.loads(lean.read_text(pod.path("members", f"{name}.json")))["pod_pid"]
    records = os.open(pod.path("exits"), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            got = exits.read_exit_record(records, pod_pid)
            if got is not None:
                return member.describe_status(got[0]), exits.exit_code(got[0]) or 125
            if not pod.pause_alive():
                return "was killed with its pod", 125
            time.sleep(0.02)
    finally:
        os.close(records)


def down(root: str, manifest: Manifest, timeout: float) -> tuple[list[str], list[str]]:
    """Removes the pods of the manifest that kube play made: (removed, warnings)."""
    from nspod import gc, pod
    from nspod.errors import NoSuchPod

    store = Store(root)
    removed, warnings = [], []
    for plan in manifest.pods:
        try:
            rec = gc.get(store, plan.name)
        except NoSuchPod:
            warnings.append(f'pod "{plan.name}": no such pod')
            continue
        if not os.path.exists(os.path.join(store.pod_dir(rec.name), KUBE_RECORD)):
            warnings.append(f'pod "{plan.name}": not made by kube play, left alone')
            continue
        pod.remove_pod(store, plan.name, force=True, timeout=timeout)
        removed.append(plan.name)
    return removed, warnings


def generate(root: str, name: str) -> str:
    from nspod import gc, memberctl

    store = Store(root)
    rec = gc.get(store, name)
    members: list[dict[str, Any]] = memberctl.ps(root, name)
    try:
        kube = json.loads(lean.read_text(os.path.join(store.pod_dir(name), KUBE_RECORD)))
    except FileNotFoundError:
        kube = None
    if kube is not None:
        return dump(describe(rec.to_dict(), members, kube))
    return dump(describe(rec.to_dict(), members, None, _image_names(store.pod_dir(name)),
                         {m["name"]: _process_facts(m["pid"]) for m in members
                          if m["state"] == "running"}))


# what join sets in every member's environment (member.member_env, security)
_JOIN_ENV = {"PATH", "HOSTNAME", "HOME", "TERM"}


def _process_facts(pid: int) -> dict[str, Any]:
    """What a running member was given that its record does not hold: the environment
    it started with (less what join sets itself) and its user and group ids."""
    facts: dict[str, Any] = {"env": [], "uid": 0, "gid": 0}
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
    except OSError:
        return facts
    for item in environ.split(b"\0"):
        key, eq, value = item.decode(errors="replace").partition("=")
        if eq and key not in _JOIN_ENV:
            facts["env"].append((key, value))
    for line in status.splitlines():
        if line.startswith(("Uid:", "Gid:")):
            facts["uid" if line[0] == "U" else "gid"] = int(line.split()[2])  # effective
    return facts


def _image_names(pdir: str) -> dict[str, str]:
    """member -> the name (else the id) of the image it ran, from the member records."""
    ids: dict[str, str] = {}
    mdir = os.path.join(pdir, "members")
    for entry in os.listdir(mdir) if os.path.isdir(mdir) else ():
        if entry.endswith(".json"):
            try:
                rec = json.loads(lean.read_text(os.path.join(mdir, entry)))
            except (OSError, ValueError):
                continue
            if rec.get("image"):
                ids[entry[:-len(".json")]] = str(rec["image"])
    if not ids:
        return {}
    from nspod import image

    store = image.ImageStore()
    return {m: (store.names_of(i) or [f"sha256:{i}"])[0] for m, i in ids.items()}
