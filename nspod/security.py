"""What a joined process may do: capabilities, no_new_privs, user, masked /proc.

The defaults are those of a container under podman or Kubernetes: the usual
fourteen capabilities, no_new_privs, and /proc with its host-revealing files
masked and its kernel knobs read-only.  `apply_security` runs in the member
just before exec (spawn.MemberSpec.prepare), after its filesystem is set up:
/proc masks first, then the user (looked up in the member's own root), then
capabilities and no_new_privs last, since dropping them ends the right to
mount and to change ids. The /proc and /sys masks themselves: masks.py.

Lean on purpose, like the rest of the join path: no dataclasses, pathlib or
re (each costs milliseconds to import); python-prctl's C module `_prctl` is
imported only in the member, where capabilities are set.
"""

from __future__ import annotations

import os
import stat

from nspod import syscalls as sc
from nspod.errors import NspodError, UnknownUser, os_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

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

# podman's default set (containers.conf default_capabilities, CapEff 800405fb):
# moby's fourteen without NET_RAW (ARP and RA spoofing of other pods and the
# host), MKNOD and AUDIT_WRITE.
DEFAULT_CAPS = (
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "NET_BIND_SERVICE", "SYS_CHROOT", "SETFCAP",
)
ALL = "ALL"


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
    """The highest capability this kernel knows, probed with PR_CAPBSET_READ.

    Never read from /proc/sys/kernel/cap_last_cap: in a member, /proc is
    whatever its root makes of it, and a forged 0 there kept every other
    capability.
    """
    return sc.last_cap()


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


class SecurityOpts:
    """What the user asked for: on create (the pod's defaults) or on join. Immutable."""

    __slots__ = ("cap_add", "cap_drop", "privileged")
    cap_add: tuple[str, ...]
    cap_drop: tuple[str, ...]
    privileged: bool

    def __init__(self, cap_add: Sequence[str] = (), cap_drop: Sequence[str] = (),
                 privileged: bool = False) -> None:
        object.__setattr__(self, "cap_add", tuple(cap_add))
        object.__setattr__(self, "cap_drop", tuple(cap_drop))
        object.__setattr__(self, "privileged", privileged)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SecurityOpts is immutable ({name})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecurityOpts) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.cap_add, self.cap_drop, self.privileged))

    def __repr__(self) -> str:
        return f"SecurityOpts({self.cap_add!r}, {self.cap_drop!r}, {self.privileged!r})"

    def to_spec(self) -> dict[str, object]:
        return {"cap_add": list(self.cap_add), "cap_drop": list(self.cap_drop),
                "privileged": self.privileged}

    @classmethod
    def from_spec(cls, spec: dict[str, object]) -> SecurityOpts:
        add = spec.get("cap_add") or []
        drop = spec.get("cap_drop") or []
        assert isinstance(add, list) and isinstance(drop, list)
        return cls(tuple(add), tuple(drop), bool(spec.get("privileged", False)))


class Policy:
    """What one member gets: resolved from the pod's defaults and the join's flags."""

    __slots__ = ("caps", "privileged", "user")

    def __init__(self, caps: frozenset[int], privileged: bool = False,
                 user: str | None = None) -> None:
        self.caps = caps  # bounding set; also effective/permitted/inheritable for uid 0
        self.privileged = privileged
        self.user = user  # UID[:GID] or NAME[:GROUP]; None: root


def resolve(pod: SecurityOpts, join: SecurityOpts, user: str | None = None) -> Policy:
    """The pod's defaults, then the join's flags on top of them."""
    if pod.privileged or join.privileged:
        return Policy(frozenset(range(last_cap() + 1)), privileged=True, user=user)
    caps = tweak(tweak((CAP_BITS[c] for c in DEFAULT_CAPS), pod.cap_add, pod.cap_drop),
                 join.cap_add, join.cap_drop)
    return Policy(caps, user=user)


# -- users ----------------------------------------------------------------------


class ExecUser:
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: tuple[int, ...], home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups  # supplementary
        self.home = home


def _read_db(path: str) -> list[list[str]]:
    """The colon-separated entries of passwd(5)/group(5); none if the file is missing.

    Opened non-blocking and required to be a regular file: a FIFO or a device
    an image put there must not hang or feed the (still privileged) member.
    No magic link is followed: the image's /etc/passwd as
    /proc/self/fd/N/../.. of a directory fd still open here led to any host
    file (RESOLVE_NO_MAGICLINKS; ordinary symlinks stay inside the root).
    """
    try:
        fd = sc.openat2(sc.AT_FDCWD, path, os.O_RDONLY | os.O_NONBLOCK,
                        sc.RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise NspodError(f"read {path}: {os_reason(e)}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NspodError(f"read {path}: not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        text = b"".join(chunks).decode(errors="replace")
    except OSError as e:
        raise NspodError(f"read {path}: {os_reason(e)}") from e
    finally:
        os.close(fd)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def lookup_user(spec: str, root: str | os.PathLike[str] = "/") -> ExecUser:
    """Resolves UID[:GID] or NAME[:GROUP] against root's /etc/passwd and /etc/group.

    As runc does (libcontainer/user.GetExecUser): a number is always a uid (or
    gid), never matched as a name, and needs no entry (an unknown uid gets gid
    0 and HOME /); a name must exist; supplementary groups are the groups
    listing the user, and only when no group is given.
    """
    user, colon, group = spec.partition(":")
    if not user or (colon and not group):
        raise UnknownUser(f"user {spec!r}: expected UID[:GID] or NAME[:GROUP]")
    etc = os.path.join(os.fspath(root), "etc")
    passwd, group_db = os.path.join(etc, "passwd"), os.path.join(etc, "group")
    entry = None
    for fields in _read_db(passwd):
        if len(fields) >= 7 and (fields[2] == str(int(user)) if user.isdigit()
                                 else fields[0] == user):
            entry = fields
            break
    if entry is not None:
        name, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5] or "/"
    elif user.isdigit():
        name, uid, gid, home = None, int(user), 0, "/"
    else:
        raise UnknownUser(f"user {user!r}: no such user in {passwd}")
    groups: list[int] = []
    entries = _read_db(group_db)
    if group:
        for fields in entries:
            if len(fields) >= 3 and not group.isdigit() and fields[0] == group:
                gid = int(fields[2])
                break
        else:
            if not group.isdigit():
                raise UnknownUser(f"group {group!r}: no such group in {group_db}")
            gid = int(group)
    elif name is not None:
        for fields in entries:
            if len(fields) >= 4 and name in fields[3].split(","):
                groups.append(int(fields[2]))
    return ExecUser(uid, gid, tuple(dict.fromkeys(groups)), home)


# -- applying ---------------------------------------------------------------------


def _set_ids(user: ExecUser) -> None:
    try:
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
    except OSError as e:
        raise NspodError(f"switch to uid {user.uid} gid {user.gid}: {os_reason(e)}") from e


def preload() -> None:
    """Imports now what apply_security needs, for a caller about to leave the host's files."""
    import _prctl  # noqa: F401


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
    import _prctl  # python-prctl's C module: its Python wrapper costs 2 ms more to import

    user = lookup_user(policy.user, root) if policy.user is not None else None
    env = {"HOME": user.home} if user is not None else {}
    top = last_cap()
    # Nothing can add to the bounding set nspod itself was given: the member gets
    # at most that (--privileged under a restricted nspod gives what nspod has).
    caps = {c for c in policy.caps if _prctl.prctl(_prctl.PR_CAPBSET_READ, c)}
    known = list(range(min(top, _prctl.CAP_LAST_CAP) + 1))  # what libcap can name
    try:
        for cap in range(top + 1):
            if cap not in caps:
                _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
        # set_caps(effective, permitted, inheritable to raise; the same three to lower)
        _prctl.set_caps([], [], [], [], [], known)
    except OSError as e:
        raise NspodError(f"drop capabilities: {os_reason(e)}") from e
    if user is not None:
        _set_ids(user)
    if user is None or user.uid == 0:
        keep = [c for c in known if c in caps]
        drop = [c for c in known if c not in caps]
        try:
            _prctl.set_caps(keep, keep, keep, drop, drop, drop)
        except OSError as e:
            raise NspodError(f"set capabilities: {os_reason(e)}") from e
    if not policy.privileged:
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)
    return env
