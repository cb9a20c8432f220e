"""Option converters and the option groups several verb tables share.

A converter takes the option's text and returns its value or raises
ValueError (args turns that into a usage error). Each imports its parser
only when called: building the tables must cost nothing (join's start-up).
"""

from __future__ import annotations

import os

from nspod.args import Opt
from nspod.lean import convert

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

EXIT_CODES = """\
exit codes: 0 success; 2 bad usage; 125 nspod failed (no such pod, not root, ...)"""


def env(value: str) -> tuple[str, str]:
    key, eq, val = value.partition("=")
    if not key:
        raise ValueError(f"{value!r} is not KEY=VALUE")
    if not eq:
        val = os.environ.get(key, "")
    return key, val


def count(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


MAX_GRACE = 86400.0  # a day: beyond that a grace period is a typo, and inf/nan never end


def seconds(value: str) -> float:
    secs = convert(value, float, "a number of seconds")
    if secs < 0:
        raise ValueError(f"{value!r} is negative")
    if not secs <= MAX_GRACE:  # also nan
        raise ValueError(f"{value!r} is not between 0 and {MAX_GRACE:.0f} seconds (a day)")
    return secs


def boolean(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


MAX_ID = 4294967294  # uid_t is 32 bits and (uid_t)-1 means "unchanged" (setresuid(2))


def user(value: str) -> str:
    """UID[:GID] or NAME[:GROUP]: names are looked up at join, numbers checked here."""
    for part in value.split(":", 1):
        if part.isdigit() and int(part) > MAX_ID:
            raise ValueError(f"{part} is more than the largest id ({MAX_ID})")
    return value


def _parser(module: str, name: str) -> Callable[[str], Any]:
    """The converter nspod.MODULE.NAME, imported at its first use."""

    def parse(value: str) -> Any:
        return getattr(__import__(f"nspod.{module}", fromlist=[name]), name)(value)

    return parse


signal = _parser("memberctl", "parse_signal")
volume = _parser("rootfs", "parse_volume")
publish = _parser("portspec", "parse_publish")
ip = _parser("ipam", "parse_ip")
dns = _parser("etcfiles", "parse_dns")
add_host = _parser("etcfiles", "parse_add_host")
cap = _parser("security", "parse_cap")
memory = _parser("limits", "parse_memory")
pids = _parser("limits", "parse_pids")
cpus = _parser("limits", "parse_cpus")
size = _parser("limits", "parse_size")
security_opt = _parser("seccomp", "parse_security_opt")


ROOTFS_OPTS = (
    Opt(("--rootfs",), "rootfs", "run in this root filesystem (pivot_root), with /proc, /dev, "
        "/sys; / for the host's files", "DIR", convert=nonempty),
    Opt(("-v", "--volume"), "volume", "bind-mount a host path (ro: read-only)",
        "HOST_PATH:PATH[:ro]", True, convert=volume),
    Opt(("--read-only",), "read_only", "mount the rootfs read-only (writable /tmp and /run)"),
    Opt(("--image",), "image", "run in a copy-on-write root of this image (pulled when "
        "missing); its Entrypoint, Cmd, Env, WorkingDir and User apply", "REF"),
    Opt(("--pull",), "pull", "pull --image: always, missing (default), never", "POLICY",
        default="missing"),
)
SECURITY_OPTS = (
    Opt(("--cap-add",), "cap_add", "add a capability (NET_ADMIN, CAP_NET_ADMIN, ALL)", "CAP",
        True, convert=cap),
    Opt(("--cap-drop",), "cap_drop", "drop a capability (or ALL)", "CAP", True, convert=cap),
    Opt(("--privileged",), "privileged",
        "every capability, /proc unmasked, no no_new_privs, no seccomp filter"),
    Opt(("--security-opt",), "security_opt", "seccomp=unconfined, or seccomp=PROFILE.json "
        "(docker's profile format)", "OPT", True, convert=security_opt),
)
SECURITY_HELP = """\
A joined process gets podman's default capabilities (CHOWN, DAC_OVERRIDE,
FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT,
SETFCAP), no_new_privs, and a /proc with kcore,
keys, timer_list, ... masked, sys, sysrq-trigger, irq, bus, fs read-only, /sys
read-only, and docker's default seccomp filter (--privileged: none of this; a
profile named with --security-opt seccomp=PROFILE.json still applies)."""
TIME_OPT = Opt(("-t", "--time"), "time", "grace period in seconds (default 10)", "SECONDS",
               default=10.0, convert=seconds)
JSON_OPT = Opt(("--json",), "json", "print JSON")
