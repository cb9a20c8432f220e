"""The seccomp filter of every member: docker's default profile unless told otherwise.

A profile is docker's JSON format (what `docker run --security-opt
seccomp=FILE` and podman take; the OCI `linux.seccomp` object is its subset),
including docker's conditional rules: `includes`/`excludes` on the member's
capabilities (its bounding set), the host's architecture and kernel version.
nspod's own default, `seccomp_default.json` in this package, has the rules of
moby's `profiles/seccomp/default.json`.

The filter is compiled with libseccomp (nspod._seccomp, cffi) into classic
BPF once per pod and capability set, and kept in the pod's directory:

    ROOT/pods/POD/seccomp/profile.json       the pod's profile, copied at create
    ROOT/pods/POD/seccomp/TAG-CAPS.bpf       compiled: flags (4 bytes) + BPF

A join reads its file and hands the bytes to the member, which loads them
with seccomp(2) as its very last step before exec (spawn), after
no_new_privs: a join that finds its filter compiled never loads libseccomp.
create compiles the filter of a plain join, so the first join is fast too.

Lean on purpose (join imports it): os, struct and nspod.lean at import.
"""

from __future__ import annotations

import os
import struct

from nspod import lean
from nspod.errors import NspodError, os_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

UNCONFINED = "unconfined"
DEFAULT = "default"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROFILE = os.path.join(HERE, "seccomp_default.json")
SUBDIR = "seccomp"
POD_PROFILE = "profile.json"
HEADER = struct.Struct("=I")  # the seccomp(2) flags, before the BPF in a compiled file

EPERM = 1
BPF_MAXINSNS = 4096  # linux/bpf_common.h: the most seccomp(2) loads in one filter
# libseccomp's actions (seccomp.h); ERRNO and TRACE carry a 16-bit value.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
FLAGS = {  # seccomp(2)
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
# uname -m -> (the SCMP_ARCH_ of archMap, the Go name docker's "arches" filters use)
MACHINES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "i386": ("SCMP_ARCH_X86", "x86"),
    "i686": ("SCMP_ARCH_X86", "x86"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
    "loongarch64": ("SCMP_ARCH_LOONGARCH64", "loong64"),
    "mips64": ("SCMP_ARCH_MIPS64", "mips64"),
}


class ProfileError(NspodError):
    """A seccomp profile nspod cannot read or compile (125)."""


# -- the user's choice ---------------------------------------------------------------


def parse_security_opt(text: str) -> str:
    """`seccomp=unconfined` or `seccomp=PROFILE.json` (also `seccomp:...`, as docker).

    Returns "unconfined" or the profile's absolute path; ValueError otherwise.
    """
    key, sep, value = text.partition("=")
    if not sep:
        key, sep, value = text.partition(":")
    if key != "seccomp" or not value:
        raise ValueError(f"{text!r}: nspod knows seccomp=unconfined and seccomp=PROFILE.json")
    return UNCONFINED if value == UNCONFINED else os.path.abspath(value)


def choose(pod: str | None, join: str | None, privileged: bool) -> str:
    """The profile a member runs under: "default", "unconfined" or a profile's path.

    The join's --security-opt wins over the pod's.  --privileged means
    unconfined unless a profile was named (as docker: an explicit profile
    still applies to a privileged container).
    """
    chosen = join if join is not None else pod
    if chosen is None or chosen == DEFAULT:
        return UNCONFINED if privileged else DEFAULT
    return chosen


# -- profiles ---------------------------------------------------------------------------


def load_profile(path: str) -> dict[str, Any]:
    """A profile file, parsed; ProfileError saying what is wrong."""
    try:
        text = lean.read_text(path)
    except OSError as e:
        raise ProfileError(f"seccomp profile {path}: {os_reason(e)}") from e
    try:
        profile = lean.loads(text)
    except ValueError as e:
        raise ProfileError(f"seccomp profile {path}: not JSON ({e})") from e
    if not isinstance(profile, dict):
        raise ProfileError(f"seccomp profile {path}: not a JSON object")
    return profile


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel, as docker reads it ("6.1.0-13-amd64" -> (6, 1))."""
    release = release or os.uname().release
    parts = release.split(".", 2)
    try:
        return int(parts[0]), int("".join(c for c in parts[1].split("-")[0] if c.isdigit()))
    except (IndexError, ValueError):
        return 0, 0


def _min_kernel(value: object) -> tuple[int, int]:
    if not isinstance(value, str) or value.count(".") != 1:
        raise ValueError(f"minKernel {value!r}: expected \"<kernel>.<major>\"")
    a, b = value.split(".")
    return int(a), int(b)


def _matches(cond: dict[str, Any], caps: set[str], arch: str,
             kernel: tuple[int, int], include: bool) -> bool:
    """Whether a rule's includes (include=True) or excludes holds (moby's setupSeccomp)."""
    arches = cond.get("arches") or []
    want = cond.get("caps") or []
    minimum = cond.get("minKernel")
    if include:
        return ((not arches or arch in arches) and all(c in caps for c in want)
                and (not minimum or kernel >= _min_kernel(minimum)))
    return bool((arches and arch in arches) or any(c in caps for c in want)
                or (minimum and kernel >= _min_kernel(minimum)))


def resolve(profile: dict[str, Any], caps: Iterable[str], machine: str | None = None,
            kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """A docker profile made concrete for one member, in the OCI form (moby's setupSeccomp).

    caps: the member's capabilities ("CAP_SYS_ADMIN", ...). Rules whose
    includes/excludes do not hold here are dropped; archMap gives the
    architectures of this machine.
    """
    machine = machine or os.uname().machine
    kernel = kernel or kernel_version()
    native, arch = MACHINES.get(machine, ("", machine))
    have = set(caps)
    if profile.get("architectures") and profile.get("archMap"):
        raise ValueError("both architectures and archMap are given: use one")
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches = [native, *(entry.get("subArchitectures") or [])]
            break
    rules = []
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict):
            raise ValueError(f"syscalls: {rule!r} is not an object")
        names = rule.get("names") or []
        if rule.get("name"):
            if names:
                raise ValueError(f"both name and names in {rule!r}: use one")
            names = [rule["name"]]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"names {names!r}: not a list of syscall names")
        exc, inc = rule.get("excludes") or {}, rule.get("includes") or {}
        if exc and _matches(exc, have, arch, kernel, include=False):
            continue
        if inc and not _matches(inc, have, arch, kernel, include=True):
            continue
        rules.append({k: v for k, v in rule.items()
                      if k in ("action", "errnoRet", "args")} | {"names": names})
    out = {k: profile[k] for k in ("defaultAction", "defaultErrnoRet", "flags") if k in profile}
    for key in ("listenerPath", "listenerMetadata"):
        if profile.get(key):
            raise ValueError(f"{key}: SCMP_ACT_NOTIFY needs a listener, which nspod has not")
    return out | {"architectures": arches, "syscalls": rules}


def _action(name: object, errno_ret: object, default_errno: int = EPERM) -> int:
    if name not in ACTIONS:
        raise ValueError(f"action {name!r}: unknown (SCMP_ACT_ERRNO, SCMP_ACT_ALLOW, ...)")
    if errno_ret is not None and name not in WITH_ERRNO:
        raise ValueError(f"errnoRet given for {name}, which returns no errno")
    value = ACTIONS[str(name)]
    if name in WITH_ERRNO:
        ret = default_errno if errno_ret is None else errno_ret
        if not isinstance(ret, int) or not 0 <= ret <= 0xFFFF:
            raise ValueError(f"errnoRet {ret!r}: not an errno")
        value |= ret
    return value


def compile_oci(oci: dict[str, Any]) -> tuple[int, bytes]:
    """(seccomp(2) flags, BPF program) for a concrete profile, through libseccomp.

    Rules as runc and crun add them: a rule whose action is the default is
    skipped (libseccomp refuses it), a syscall this libseccomp does not know
    is skipped, conditions on distinct arguments go in one rule (AND) and
    several conditions on one argument become one rule each (OR).
    """
    from nspod import _seccomp  # type: ignore[attr-defined]  # libseccomp: only here

    ffi, lib = _seccomp.ffi, _seccomp.lib
    default = _action(oci.get("defaultAction"), oci.get("defaultErrnoRet"))
    flags = 0
    for flag in oci.get("flags") or []:
        if flag not in FLAGS:
            raise ValueError(f"flag {flag!r}: unknown ({', '.join(FLAGS)})")
        flags |= FLAGS[flag]
    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise ValueError("libseccomp refused the default action")
    try:
        for arch in oci.get("architectures") or []:
            name = str(arch).removeprefix("SCMP_ARCH_").lower()
            token = lib.seccomp_arch_resolve_name(name.encode())
            if token == 0:
                raise ValueError(f"architecture {arch!r}: unknown to libseccomp")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -17:  # EEXIST: the native one is always there
                raise ValueError(f"architecture {arch}: {os.strerror(-rc)}")
        cmp = ffi.new("struct scmp_arg_cmp[6]")
        for rule in oci.get("syscalls") or []:
            action = _action(rule.get("action"), rule.get("errnoRet"))
            if action == default:
                continue
            conds = _conditions(rule.get("args") or [])
            for name in rule.get("names") or []:
                nr = lib.seccomp_syscall_resolve_name(str(name).encode())
                if nr == -1:  # __NR_SCMP_ERROR: not a syscall this libseccomp knows
                    continue
                for group in conds:
                    for i, (index, op, a, b) in enumerate(group):
                        cmp[i].arg, cmp[i].op, cmp[i].datum_a, cmp[i].datum_b = index, op, a, b
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), cmp)
                    if rc < 0:
                        raise ValueError(f"rule for {name}: {os.strerror(-rc)}")
        fd = os.memfd_create("nspod-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise ValueError(f"export: {os.strerror(-rc)}")
            size = os.fstat(fd).st_size
            os.lseek(fd, 0, os.SEEK_SET)
            prog = b""
            while len(prog) < size:
                chunk = os.read(fd, size - len(prog))
                if not chunk:
                    break
                prog += chunk
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    if not prog or len(prog) // 8 > BPF_MAXINSNS:
        raise ValueError(f"{len(prog) // 8} BPF instructions: the kernel takes 1 to "
                         f"{BPF_MAXINSNS}")
    return flags, prog


def _conditions(args: list[Any]) -> list[list[tuple[int, int, int, int]]]:
    """The argument conditions of a rule, grouped as libseccomp rules (see compile_oci)."""
    conds = []
    for arg in args:
        index, op = arg.get("index"), arg.get("op")
        if not isinstance(index, int) or not 0 <= index <= 5:
            raise ValueError(f"argument index {index!r}: not 0-5")
        if op not in OPS:
            raise ValueError(f"operator {op!r}: unknown ({', '.join(OPS)})")
        a, b = arg.get("value", 0), arg.get("valueTwo", 0) or 0
        if not isinstance(a, int) or not isinstance(b, int) or a < 0 or b < 0:
            raise ValueError(f"argument value {a!r}/{b!r}: not an unsigned number")
        conds.append((index, OPS[op], a, b))
    if not conds:
        return [[]]
    if len({c[0] for c in conds}) < len(conds):
        return [[c] for c in conds]
    return [conds]


def compile_profile(profile: dict[str, Any], caps: Iterable[str], source: str) -> tuple[int, bytes]:
    """A docker profile compiled for a member with caps; ProfileError naming source."""
    try:
        return compile_oci(resolve(profile, caps))
    except (ValueError, TypeError, AttributeError) as e:
        raise ProfileError(f"seccomp profile {source}: {e}") from e


def cap_names(caps: Iterable[int]) -> list[str]:
    from nspod.security import CAP_NAMES

    return [f"CAP_{CAP_NAMES[c]}" for c in sorted(caps) if c < len(CAP_NAMES)]


# -- per pod -----------------------------------------------------------------------------


def prepare_pod(pdir: str, spec: dict[str, Any]) -> None:
    """create and start: keeps the pod's profile, compiles the filter of a plain join.

    The profile named on create is read once, checked and copied into the pod,
    so the pod keeps it whatever becomes of the file.  Compiled filters of a
    previous run are dropped (a reboot may have brought a new kernel).
    """
    from nspod import security

    setting = spec.get("seccomp")
    policy = security.resolve(security.SecurityOpts.from_spec(spec), security.SecurityOpts())
    caps, privileged = policy.caps, policy.privileged
    cache = os.path.join(pdir, SUBDIR)
    os.makedirs(cache, mode=0o700, exist_ok=True)
    for entry in os.listdir(cache):
        if entry.endswith(".bpf"):
            os.unlink(os.path.join(cache, entry))
    copy = os.path.join(cache, POD_PROFILE)
    if setting not in (None, DEFAULT, UNCONFINED) and not os.path.exists(copy):
        assert setting is not None
        profile = load_profile(setting)
        compile_profile(profile, cap_names(caps), setting)  # refuse it now, not at join
        lean.write_atomic(copy, lean.dumps(profile), sync=False)
    member_filter(pdir, setting, None, caps, privileged)


def member_filter(pdir: str, pod_setting: str | None, join_setting: str | None,
                  caps: Iterable[int], privileged: bool) -> tuple[int, bytes] | None:
    """(flags, BPF) for a member of the pod with caps, or None when it runs unconfined.

    Read from the pod's cache when compiled before; otherwise compiled and
    kept there (a file written atomically: concurrent joins may both write it).
    """
    chosen = choose(pod_setting, join_setting, privileged)
    if chosen == UNCONFINED:
        return None
    caps = frozenset(caps)
    mask = sum(1 << c for c in caps)
    cache = os.path.join(pdir, SUBDIR)
    profile: dict[str, Any] | None = None
    if chosen == DEFAULT:
        tag, source = DEFAULT, DEFAULT_PROFILE
    elif join_setting is None:  # the pod's own profile, as copied at create
        tag, source = "pod", os.path.join(cache, POD_PROFILE)
        if not os.path.exists(source):  # a pod made before nspod kept profiles
            source = chosen
    else:
        profile = load_profile(chosen)
        tag, source = lean.sha256_hex(lean.dumps(profile).encode())[:16], chosen
    path = os.path.join(cache, f"{tag}-{mask:x}.bpf")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) > HEADER.size:
            return HEADER.unpack_from(data)[0], data[HEADER.size:]
    except FileNotFoundError:
        pass
    if profile is None:
        profile = load_profile(source)
    flags, prog = compile_profile(profile, cap_names(caps), chosen)
    _write(cache, path, HEADER.pack(flags) + prog)
    return flags, prog


def _write(cache: str, path: str, data: bytes) -> None:
    try:
        os.makedirs(cache, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache: the next join compiles again
