"""What a joined process may do: capabilities, no_new_privs, user, masked /proc.

The defaults are those of a container under podman or Kubernetes: the usual
fourteen capabilities, no_new_privs, and /proc with its host-revealing files
masked and its kernel knobs read-only.  `apply_security` runs in the member
just before exec (spawn.MemberSpec.prepare), after its filesystem is set up:
/proc masks first, then the user (looked up in the member's own root), then
capabilities and no_new_privs last, since dropping them ends the right to
mount and to change ids.

Importing this module is cheap (the CLI parses capability names with it);
python-prctl is imported only where capabilities are set.
"""

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nspod import syscalls as sc
from nspod.errors import NspodError, os_reason

# linux/capability.h, in bit order.
CAP_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAP_BITS = {name: bit for bit, name in enumerate(CAP_NAMES)}

# The default set of podman, containerd and CRI-O (moby's caps.DefaultCapabilities).
DEFAULT_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SETFCAP",
)
ALL = "ALL"

# runc's default maskedPaths and readonlyPaths (runtime-spec config-linux.md).
MASKED = (
    "proc/asound", "proc/acpi", "proc/kcore", "proc/keys", "proc/latency_stats",
    "proc/timer_list", "proc/timer_stats", "proc/sched_debug", "proc/scsi",
    "sys/firmware", "sys/devices/virtual/powercap",
)
READ_ONLY = ("proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger")


class UnknownUser(NspodError):
    """--user names a user or group the member's root does not know (125)."""


def parse_cap(name: str) -> str:
    """`NET_ADMIN`, `cap_net_admin` or `all` -> `NET_ADMIN` / `ALL`; ValueError if unknown."""
    key = name.strip().upper()
    if key == ALL:
        return ALL
    if key.startswith("CAP_"):
        key = key[4:]
    if key not in CAP_BITS:
        raise ValueError(f"unknown capability {name!r}")
    return key


def last_cap() -> int:
    """The highest capability this kernel knows (capabilities(7): cap_last_cap)."""
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return len(CAP_NAMES) - 1


def tweak(base: Iterable[int], add: Sequence[str], drop: Sequence[str]) -> frozenset[int]:
    """base with add and drop applied as podman/moby do (caps.TweakCapabilities).

    `add ALL` gives every capability but the dropped ones; `drop ALL` keeps only
    the added ones; otherwise drop first, then add (so add wins).
    """
    every = frozenset(range(last_cap() + 1))
    adds = {CAP_BITS[c] for c in add if c != ALL}
    drops = {CAP_BITS[c] for c in drop if c != ALL}
    if ALL in add:
        return every - drops if ALL not in drop else frozenset(adds)
    if ALL in drop:
        return frozenset(adds)
    return frozenset((set(base) - drops) | adds)


@dataclass(frozen=True)
class SecurityOpts:
    """What the user asked for: on create (the pod's defaults) or on join."""

    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False

    def to_spec(self) -> dict[str, object]:
        return {"cap_add": list(self.cap_add), "cap_drop": list(self.cap_drop),
                "privileged": self.privileged}

    @classmethod
    def from_spec(cls, spec: dict[str, object]) -> "SecurityOpts":
        add = spec.get("cap_add") or []
        drop = spec.get("cap_drop") or []
        assert isinstance(add, list) and isinstance(drop, list)
        return cls(tuple(add), tuple(drop), bool(spec.get("privileged", False)))


@dataclass(frozen=True)
class Policy:
    """What one member gets: resolved from the pod's defaults and the join's flags."""

    caps: frozenset[int]  # bounding set; also effective/permitted/inheritable for uid 0
    privileged: bool = False
    user: str | None = None  # UID[:GID] or NAME[:GROUP]; None: root


def resolve(pod: SecurityOpts, join: SecurityOpts, user: str | None = None) -> Policy:
    """The pod's defaults, then the join's flags on top of them."""
    if pod.privileged or join.privileged:
        return Policy(frozenset(range(last_cap() + 1)), privileged=True, user=user)
    caps = tweak(tweak((CAP_BITS[c] for c in DEFAULT_CAPS), pod.cap_add, pod.cap_drop),
                 join.cap_add, join.cap_drop)
    return Policy(caps, user=user)


# -- users ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary
    home: str


def _read_db(path: Path) -> list[list[str]]:
    """The colon-separated entries of passwd(5)/group(5); none if the file is missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise NspodError(f"read {path}: {os_reason(e)}") from e
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def lookup_user(spec: str, root: str | os.PathLike[str] = "/") -> ExecUser:
    """Resolves UID[:GID] or NAME[:GROUP] against root's /etc/passwd and /etc/group.

    As runc does (libcontainer/user.GetExecUser): a number needs no entry (an
    unknown uid gets gid 0 and HOME /); a name must exist; supplementary groups
    are the groups listing the user, and only when no group is given.
    """
    user, colon, group = spec.partition(":")
    if not user or (colon and not group):
        raise UnknownUser(f"user {spec!r}: expected UID[:GID] or NAME[:GROUP]")
    etc = Path(root) / "etc"
    entry = None
    for fields in _read_db(etc / "passwd"):
        if len(fields) >= 7 and (fields[0] == user or (user.isdigit() and fields[2] == user)):
            entry = fields
            break
    if entry is not None:
        name, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5] or "/"
    elif user.isdigit():
        name, uid, gid, home = None, int(user), 0, "/"
    else:
        raise UnknownUser(f"user {user!r}: no such user in {etc / 'passwd'}")
    groups: list[int] = []
    entries = _read_db(etc / "group")
    if group:
        for fields in entries:
            if len(fields) >= 3 and (fields[0] == group or (group.isdigit() and fields[2] == group)):
                gid = int(fields[2])
                break
        else:
            if not group.isdigit():
                raise UnknownUser(f"group {group!r}: no such group in {etc / 'group'}")
            gid = int(group)
    elif name is not None:
        for fields in entries:
            if len(fields) >= 4 and name in fields[3].split(","):
                groups.append(int(fields[2]))
    return ExecUser(uid, gid, tuple(dict.fromkeys(groups)), home)


# -- /proc ------------------------------------------------------------------------


def mask_proc(root: str = "/") -> None:
    """Masks MASKED and makes READ_ONLY read-only under root, in this mount namespace.

    A file is hidden under a bind of /dev/null, a directory under an empty
    read-only tmpfs; what does not exist is skipped.  Read-only paths are bound
    onto themselves and remounted MS_RDONLY, keeping the flags they had
    (mount(2): a bind remount replaces the per-mount flags).
    """
    base = Path(root)
    null = str(base / "dev" / "null") if (base / "dev" / "null").exists() else "/dev/null"
    for rel in MASKED:
        path = base / rel
        try:
            if path.is_dir():
                sc.mount("tmpfs", str(path), "tmpfs", sc.MS_RDONLY, "size=0,mode=555")
            elif path.exists():
                sc.mount(null, str(path), None, sc.MS_BIND)
        except OSError as e:
            raise NspodError(f"mask {path}: {os_reason(e)}") from e
    for rel in READ_ONLY:
        path = base / rel
        if not path.exists():
            continue
        try:
            sc.mount(str(path), str(path), None, sc.MS_BIND | sc.MS_REC)
            kept = os.statvfs(path).f_flag & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
            sc.mount(None, str(path), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | kept)
        except OSError as e:
            raise NspodError(f"make {path} read-only: {os_reason(e)}") from e


# -- applying ---------------------------------------------------------------------


def _set_ids(user: ExecUser) -> None:
    try:
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
    except OSError as e:
        raise NspodError(f"switch to uid {user.uid} gid {user.gid}: {os_reason(e)}") from e


def apply_security(policy: Policy, root: str = "/") -> dict[str, str]:
    """Gives this process (a member before exec) what policy allows, no more.

    root is the member's root filesystem as this process sees it ("/" once it
    has pivoted, or the host's).  Returns environment to add: HOME of --user.

    Order matters (capabilities(7)): the bounding set is dropped while
    CAP_SETPCAP is still ours; the inheritable set is emptied before anything
    else, which also empties the ambient set (the kernel keeps ambient within
    permitted & inheritable); setuid to a non-zero uid then clears permitted
    and effective (no keepcaps), which is what runc gives a non-root user:
    only the bounding set.  uid 0 gets the set in effective, permitted and
    inheritable.  no_new_privs comes last: with it, exec never gains a
    capability the process does not already hold in its permitted set.
    """
    import prctl  # python-prctl: a C extension, only needed here

    if not policy.privileged:
        mask_proc(root)
    user = lookup_user(policy.user, root) if policy.user is not None else None
    env = {"HOME": user.home} if user is not None else {}
    top = last_cap()
    # Nothing can add to the bounding set nspod itself was given: the member gets
    # at most that (--privileged under a restricted nspod gives what nspod has).
    caps = {c for c in policy.caps if prctl.capbset_read(c)}
    try:
        for cap in range(top + 1):
            if cap not in caps:
                prctl.capbset_drop(cap)
        known = [c for c in prctl.ALL_CAPS if c <= top]
        prctl.set_caps((known, prctl.CAP_INHERITABLE, False))
    except OSError as e:
        raise NspodError(f"drop capabilities: {os_reason(e)}") from e
    if user is not None:
        _set_ids(user)
    if user is None or user.uid == 0:
        keep = [c for c in known if c in caps]
        drop = [c for c in known if c not in caps]
        flags = [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED, prctl.CAP_INHERITABLE]
        try:
            prctl.set_caps((keep, flags, True), (drop, flags, False))
        except OSError as e:
            raise NspodError(f"set capabilities: {os_reason(e)}") from e
    if not policy.privileged:
        prctl.set_no_new_privs(1)
    return env
