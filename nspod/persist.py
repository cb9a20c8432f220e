"""What outlives a reboot: pod and member specs under the storage root.

    STORAGE/pods/KEY/root                  the state root these pods live under
    STORAGE/pods/KEY/NAME/pod.json         spec, hostname, network environment,
                                           "wanted" (running | stopped), "boot_id"
    STORAGE/pods/KEY/NAME/members/M.json   a member with a restart policy:
                                           spec, policy, restarts, user_stopped

STORAGE is $NSPOD_STORAGE or /var/lib/nspod (on disk, shared with images);
KEY names the state root (ROOT, $NSPOD_ROOT, /run/nspod by default: a tmpfs
that a reboot empties). A reboot is told by the kernel's boot_id, never by
guessing from pids. `nspod start --all` brings back what should run: every
pod the user did not stop, with its members whose policy is always, or
unless-stopped and not stopped by the user.
"""

from __future__ import annotations

import os
import time

from nspod import lean
from nspod.errors import NoSuchPod, NspodError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nspod.store import PodRecord, Store

BOOT_ID = "/proc/sys/kernel/random/boot_id"
NET_ENV = ("NSPOD_BRIDGE", "NSPOD_SUBNET", "NSPOD_NFT_TABLE")
AT_BOOT = ("always", "unless-stopped")  # the policies start --all brings back


def boot_id() -> str:
    return lean.read_text(BOOT_ID).strip()


def _root_dir(root: str) -> str:
    """The state root's directory in storage (the key cgroups.root_key gives it)."""
    from nspod.store import storage_root

    key = lean.sha256_hex(os.path.realpath(root).encode())[:10]
    return os.path.join(storage_root(), "pods", key)


def _pod_dir(root: str, name: str) -> str:
    return os.path.join(_root_dir(root), name)


def save_pod(store: Store, rec: PodRecord, wanted: str) -> None:
    """create, start (wanted running) and stop (wanted stopped): fsync'd."""
    top = _root_dir(store.root)
    pdir = os.path.join(top, rec.name)
    os.makedirs(os.path.join(pdir, "members"), mode=0o700, exist_ok=True)
    if not os.path.exists(os.path.join(top, "root")):
        lean.write_atomic(os.path.join(top, "root"), os.path.realpath(store.root) + "\n")
    spec = {k: v for k, v in rec.spec.items() if k != "cgroups"}
    data = {"name": rec.name, "hostname": rec.hostname, "created": rec.created, "spec": spec,
            "wanted": wanted, "boot_id": boot_id(), "saved": time.time(),
            "env": {k: os.environ[k] for k in NET_ENV if os.environ.get(k)},
            "ip": rec.net.get("ip") or rec.net.get("released_ip")}
    lean.write_atomic(os.path.join(pdir, "pod.json"), lean.dumps(data))


def member_text(rec: dict[str, Any]) -> str:
    """What is kept of a member with a restart policy."""
    return lean.dumps({k: rec[k] for k in ("name", "spec", "restart", "health", "restarts",
                                           "detached", "user_stopped", "started") if k in rec})


def save_member(pod_dir: str, rec: dict[str, Any], text: str | None = None) -> None:
    """A member with a restart policy, as the monitor sees it (joined, restarted)
    or as the user's kill left it.

    Written by the monitor, off join's path, and not fsync'd: the kernel
    writes it back within seconds (a member joined in the last seconds before
    a power cut may be lost).
    """
    root = os.path.dirname(os.path.dirname(pod_dir))
    mdir = os.path.join(_pod_dir(root, os.path.basename(pod_dir)), "members")
    if not os.path.isdir(mdir):
        return  # a pod made before storage existed: nothing to attach it to
    lean.write_atomic(os.path.join(mdir, f"{rec['name']}.json"),
                      text if text is not None else member_text(rec), sync=False)


def forget(store: Store, name: str) -> None:
    """rm: the pod is gone for good."""
    from nspod.poddir import remove_tree

    remove_tree(_pod_dir(store.root, name), quiet=True)
    top = _root_dir(store.root)
    try:
        if os.listdir(top) == ["root"]:  # its last pod: nothing of this state root stays
            os.unlink(os.path.join(top, "root"))
            os.rmdir(top)
    except OSError:
        pass  # gone already, or a create made a pod meanwhile


def forget_dead(store: Store, name: str) -> None:
    """gc of a pod that died in this boot: gone as with rm. A pod last saved in
    another boot is kept: its record is a reboot's leftover, start --all's business."""
    saved = _load(os.path.join(_pod_dir(store.root, name), "pod.json"))
    if saved is not None and saved.get("boot_id") == boot_id():
        forget(store, name)


def _load(path: str) -> dict[str, Any] | None:
    try:
        return lean.loads(lean.read_text(path))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def saved(root: str, name: str) -> dict[str, Any] | None:
    """The stored pod, or None."""
    return _load(os.path.join(_pod_dir(root, name), "pod.json"))


def saved_names(root: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(_root_dir(root))
                      if e.is_dir() and os.path.exists(os.path.join(e.path, "pod.json")))
    except FileNotFoundError:
        return []


def _members(root: str, name: str) -> list[dict[str, Any]]:
    mdir = os.path.join(_pod_dir(root, name), "members")
    try:
        files = sorted(os.listdir(mdir))
    except FileNotFoundError:
        return []
    out = [m for f in files if f.endswith(".json") and (m := _load(os.path.join(mdir, f)))]
    return sorted(out, key=lambda m: m.get("started", 0))


def _create_spec(saved: dict[str, Any]):  # type: ignore[no-untyped-def]
    from nspod import pod, portspec, rootfs, security
    from nspod.limits import Limits

    s = saved["spec"]
    net = s.get("net", "bridge")
    if net == "bridge":
        net = s.get("network") or "bridge"  # the pod's network (nspod, or one made by name)
    return pod.CreateSpec(
        name=saved["name"], hostname=saved["hostname"], net=net,
        ip=s.get("ip"), ports=tuple(portspec.Publish.from_dict(d) for d in s.get("ports", [])),
        dns=tuple(s.get("dns", [])), add_hosts=tuple((h[0], h[1]) for h in s.get("add_hosts", [])),
        limits=Limits(s.get("memory"), s.get("pids"), s.get("cpus")),
        security=security.SecurityOpts.from_spec(s), rootfs=s.get("rootfs"),
        volumes=tuple(rootfs.Volume.from_list(v) for v in s.get("volumes", [])),
        read_only=bool(s.get("read_only")), seccomp=s.get("seccomp"),
        shm_size=s.get("shm_size"), image=s.get("image"))


def _create(store: Store, saved: dict[str, Any]) -> PodRecord:
    """Makes the pod again, on the bridge, subnet and table it was made with
    (the boot unit has none of them in its environment)."""
    from nspod import pod

    old = {k: os.environ.get(k) for k in NET_ENV}
    os.environ.update(saved.get("env", {}))
    try:
        spec = _create_spec(saved)
        if not spec.image:
            return pod.create(store, spec)
        from nspod import image  # the pod's image is in storage, as its spec

        with image.ImageStore().hold(spec.image, store.pod_dir(spec.name)):
            return pod.create(store, spec)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _should_run(m: dict[str, Any], policy_filter: str | None) -> bool:
    kind = str(m.get("restart", "no")).partition(":")[0]
    if policy_filter is not None and kind != policy_filter:
        return False
    return kind == "always" or (kind == "unless-stopped" and not m.get("user_stopped"))


def restore(store: Store, name: str, policy_filter: str | None = None,
            explicit: bool = True) -> bool:
    """Brings a pod back from storage when the state root has lost it (a reboot).

    explicit: `start NAME` (runs it whatever "wanted" says); else start --all.
    Returns whether it made the pod.
    """
    saved = _load(os.path.join(_pod_dir(store.root, name), "pod.json"))
    if saved is None:
        raise NoSuchPod(f'pod "{name}": no such pod')
    if os.path.exists(os.path.join(store.pod_dir(name), "pod.json")):
        return False
    members = [m for m in _members(store.root, name) if _should_run(m, policy_filter)]
    if not explicit and (saved.get("wanted") != "running" or
                         (policy_filter is not None and not members)):
        return False
    _create(store, saved)  # saves it, with this boot's id
    _join_missing(store, name, policy_filter)
    return True


def _join_missing(store: Store, name: str, policy_filter: str | None) -> list[str]:
    """Joins the stored members that should run and that the state root has no
    record of (a restore, or one killed halfway: the next start --all ends it)."""
    from nspod import member, monitor
    from nspod.runspec import join_spec

    started, failed = [], []
    for m in _members(store.root, name):
        if not _should_run(m, policy_filter) or \
                os.path.exists(os.path.join(store.pod_dir(name), "members", f"{m['name']}.json")):
            continue
        spec = join_spec(name, m["name"], m)
        spec.carry = {"restarts": int(m.get("restarts", 0))}
        try:
            member.join(store.root, spec)
        except NspodError as e:
            failed.append(e)
            continue
        started.append(m["name"])
        from nspod.poddir import checkpoint

        checkpoint("restore-member")
    if started:
        monitor.want(store.pod_dir(name))
    if failed:
        raise failed[0]
    return started


def _forget_boot(store: Store, name: str) -> None:
    """A record from another boot: its pids mean nothing now, nothing of it runs."""
    from nspod import member

    try:
        p = member.Pod(store.root, name)
        for rec, path in member.member_records(p):
            if "pod_pid" in rec and "status" not in rec:
                rec["status"], rec["finished"] = 9, p.rec.get("finished") or time.time()
                lean.write_atomic(path, lean.dumps(rec), sync=False)
        rec2 = store.load(name)
        if rec2.state == "running":
            rec2.state, rec2.pid, rec2.pid_start = "exited", 0, 0
            store.save(rec2)
    except (NspodError, OSError):
        pass


def start_all(store: Store, policy_filter: str | None = None) -> list[str]:
    """`nspod start --all`: every pod (and member) that should run, runs; returns the pods."""
    from nspod import gc, pod

    started = []
    now_boot = boot_id()
    for name in sorted(set(saved_names(store.root)) | set(store.names())):
        saved = _load(os.path.join(_pod_dir(store.root, name), "pod.json"))
        try:
            if not os.path.exists(os.path.join(store.pod_dir(name), "pod.json")):
                if saved is not None and restore(store, name, policy_filter, explicit=False):
                    started.append(name)
                continue
            if saved is not None and saved.get("boot_id") != now_boot:
                _forget_boot(store, name)
            rec = gc.get(store, name)
            wanted = saved.get("wanted") if saved else ("stopped" if rec.state == "stopped"
                                                        else "running")
            if rec.state == "running":
                _join_missing(store, name, policy_filter)  # a restore cut short
                continue
            if wanted != "running":
                continue
            if policy_filter is not None and not any(
                    _should_run(m, policy_filter) for m in _members(store.root, name)):
                continue
            pod.start_pod(store, name)
            started.append(name)
        except NspodError as e:
            raise NspodError(f"start --all: pod {name!r}: {e}") from e
    return started
