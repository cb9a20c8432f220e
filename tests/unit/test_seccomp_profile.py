"""Seccomp profiles: docker's conditional rules, the OCI form, compiling, the user's choice."""

import json
from pathlib import Path

import pytest

from nspod import lean, seccomp, security
from nspod.seccomp import DEFAULT, UNCONFINED, ProfileError

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
               "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]


def builtin() -> dict[str, object]:
    return seccomp.load_profile(seccomp.DEFAULT_PROFILE)


def allowed(oci: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    """syscall -> the rules naming it."""
    out: dict[str, list[dict[str, object]]] = {}
    for rule in oci["syscalls"]:  # type: ignore[attr-defined]
        for name in rule["names"]:
            out.setdefault(name, []).append(rule)
    return out


def test_security_opt() -> None:
    assert seccomp.parse_security_opt("seccomp=unconfined") == UNCONFINED
    assert seccomp.parse_security_opt("seccomp:unconfined") == UNCONFINED
    assert seccomp.parse_security_opt("seccomp=/etc/p.json") == "/etc/p.json"
    assert seccomp.parse_security_opt("seccomp=p.json").endswith("/p.json")
    for bad in ("seccomp", "seccomp=", "apparmor=unconfined", "label=disable"):
        with pytest.raises(ValueError, match="seccomp=unconfined"):
            seccomp.parse_security_opt(bad)


def test_choice() -> None:
    assert seccomp.choose(None, None, False) == DEFAULT
    assert seccomp.choose(None, None, True) == UNCONFINED  # --privileged
    assert seccomp.choose("/p.json", None, False) == "/p.json"
    assert seccomp.choose("/p.json", None, True) == "/p.json"  # named: kept, as docker
    assert seccomp.choose("/p.json", UNCONFINED, False) == UNCONFINED  # the join's wins
    assert seccomp.choose(UNCONFINED, "/j.json", False) == "/j.json"


def test_namespaces_only_with_sys_admin() -> None:
    plain = allowed(seccomp.resolve(builtin(), DOCKER_CAPS, "x86_64", (6, 1)))
    for call in ("unshare", "setns", "mount", "bpf", "perf_event_open", "keyctl", "add_key",
                 "userfaultfd", "kexec_load", "open_by_handle_at", "fsopen"):
        assert call not in plain, call
    # clone: only without namespace flags; clone3: ENOSYS, so that libc falls back to clone
    (clone,) = plain["clone"]
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = plain["clone3"]
    assert (clone3["action"], clone3["errnoRet"]) == ("SCMP_ACT_ERRNO", 38)
    admin = allowed(seccomp.resolve(builtin(), [*DOCKER_CAPS, "CAP_SYS_ADMIN"], "x86_64", (6, 1)))
    for call in ("unshare", "setns", "mount", "bpf", "perf_event_open", "fsopen"):
        assert call in admin, call
    assert [r.get("args") for r in admin["clone"]] == [None]  # any flags
    assert [r["action"] for r in admin["clone3"]] == ["SCMP_ACT_ALLOW"]
    bpf = allowed(seccomp.resolve(builtin(), [*DOCKER_CAPS, "CAP_BPF"], "x86_64", (6, 1)))
    assert "bpf" in bpf and "unshare" not in bpf


def test_ptrace_by_kernel_version_and_arch_rules() -> None:
    assert "ptrace" in allowed(seccomp.resolve(builtin(), DOCKER_CAPS, "x86_64", (4, 8)))
    assert "ptrace" not in allowed(seccomp.resolve(builtin(), DOCKER_CAPS, "x86_64", (4, 7)))
    assert "ptrace" in allowed(seccomp.resolve(builtin(), ["CAP_SYS_PTRACE"], "x86_64", (4, 7)))
    x86 = seccomp.resolve(builtin(), DOCKER_CAPS, "x86_64", (6, 1))
    assert x86["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert "arch_prctl" in allowed(x86) and "set_tls" not in allowed(x86)
    arm = seccomp.resolve(builtin(), DOCKER_CAPS, "aarch64", (6, 1))
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "set_tls" in allowed(arm) and "arch_prctl" not in allowed(arm)


def test_personality_and_socket_arguments() -> None:
    rules = allowed(seccomp.resolve(builtin(), DOCKER_CAPS, "x86_64", (6, 1)))
    assert sorted(r["args"][0]["value"] for r in rules["personality"]) == [  # type: ignore[index]
        0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    # every address family but AF_ALG (38) and AF_VSOCK (40)
    assert sorted((r["args"][0]["op"], r["args"][0]["value"])  # type: ignore[index]
                  for r in rules["socket"]) == [
        ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40), ("SCMP_CMP_LT", 38)]


def test_a_profile_from_a_file_compiles_as_the_builtin(tmp_path: Path) -> None:
    copy = tmp_path / "default.json"
    copy.write_text(Path(seccomp.DEFAULT_PROFILE).read_text())
    for caps in (DOCKER_CAPS, [*DOCKER_CAPS, "CAP_SYS_ADMIN"]):
        a = seccomp.compile_profile(builtin(), caps, "builtin")
        b = seccomp.compile_profile(seccomp.load_profile(str(copy)), caps, str(copy))
        assert a == b
        assert a[0] == 0 and len(a[1]) % 8 == 0 and len(a[1]) // 8 < 4096


def test_the_old_name_field_and_flags() -> None:
    old = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
           "syscalls": [{"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    flags, prog = seccomp.compile_profile(old, [], "old")
    assert flags == 2 and prog
    # a name this libseccomp does not know is skipped, as runc and crun do
    seccomp.compile_profile({"defaultAction": "SCMP_ACT_ERRNO",
                             "syscalls": [{"names": ["no_such_call", "read"],
                                           "action": "SCMP_ACT_ALLOW"}]}, [], "x")


@pytest.mark.parametrize("profile, why", [
    ({"defaultAction": "SCMP_ACT_FROB"}, "action 'SCMP_ACT_FROB': unknown"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "errnoRet given"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"}, "listener"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, "flag"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_VAX"]}, "architecture"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "use one"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "index 7"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}, "operator"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}, "use one"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": "read", "action": "SCMP_ACT_ALLOW"}]}, "not a list"),
])
def test_bad_profiles(profile: dict[str, object], why: str) -> None:
    with pytest.raises(ProfileError, match=why):
        seccomp.compile_profile(profile, [], "p.json")


def test_a_filter_too_large_for_the_kernel() -> None:
    huge = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]} for v in range(5000)]}
    with pytest.raises(ProfileError, match="BPF instructions: the kernel takes 1 to 4096"):
        seccomp.compile_profile(huge, [], "huge.json")


def test_unreadable_profiles(tmp_path: Path) -> None:
    for text in ("", "{", "[1, 2]", "not json"):
        (tmp_path / "p.json").write_text(text)
        with pytest.raises(ProfileError, match=f"seccomp profile {tmp_path}/p.json: "):
            seccomp.load_profile(str(tmp_path / "p.json"))
    with pytest.raises(ValueError):  # the C scanner's StopIteration, made a ValueError
        lean.loads("")


def test_the_pod_cache(tmp_path: Path) -> None:
    spec: dict[str, object] = {"seccomp": None}
    seccomp.prepare_pod(str(tmp_path), spec)
    (compiled,) = (tmp_path / "seccomp").glob("default-*.bpf")
    caps = security.resolve(security.SecurityOpts(), security.SecurityOpts()).caps
    assert compiled.name == f"default-{sum(1 << c for c in caps):x}.bpf"  # a plain join's
    got = seccomp.member_filter(str(tmp_path), None, None, caps, False)
    assert got is not None and compiled.read_bytes() == seccomp.HEADER.pack(got[0]) + got[1]
    assert got[1] == seccomp.compile_profile(builtin(), seccomp.cap_names(caps), "d")[1]
    assert seccomp.member_filter(str(tmp_path), None, UNCONFINED, [], False) is None
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    seccomp.prepare_pod(str(tmp_path / "pod2"), {"seccomp": str(profile)})
    assert json.loads((tmp_path / "pod2" / "seccomp" / "profile.json").read_text()) == {
        "defaultAction": "SCMP_ACT_ALLOW"}
