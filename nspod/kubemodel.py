"""A Kubernetes pod in nspod's terms: the plan kubeparse reads and kubeplay acts on.

Also the quantity syntax (128Mi, 500m) and the kubelet's $(VAR) expansion.
Pure: no root, no kernel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Port:
    container_port: int
    host_port: int | None = None
    protocol: str = "TCP"
    host_ip: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Mount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None


@dataclass(frozen=True)
class Container:
    name: str
    image: str | None = None
    image_pull_policy: str | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    ports: tuple[Port, ...] = ()
    mounts: tuple[Mount, ...] = ()
    memory: int | None = None  # resources.limits.memory, bytes
    cpus: float | None = None  # resources.limits.cpu, CPUs
    run_as_user: int | None = None
    run_as_group: int | None = None
    privileged: bool = False
    read_only_root: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    allow_privilege_escalation: bool | None = None
    seccomp: str | None = None  # None: RuntimeDefault; "unconfined"; a profile's path

    def argv(self) -> list[str]:
        """command + args with $(VAR) references expanded from env, as the kubelet does."""
        command, args = self.expanded()
        return [*(command or ()), *(args or ())]

    def expanded(self) -> tuple[list[str] | None, list[str] | None]:
        """(command, args), $(VAR) references expanded from env; None where not given."""
        env = dict(self.env)
        return (None if self.command is None else [expand(a, env) for a in self.command],
                None if self.args is None else [expand(a, env) for a in self.args])

    def pull_policy(self) -> str:
        """nspod's pull policy for the image: imagePullPolicy, or Kubernetes' default
        (Always for :latest or no tag, IfNotPresent otherwise)."""
        policy = self.image_pull_policy
        if policy is None:
            ref = self.image or ""
            tag = ref.rsplit("/", 1)[-1].partition(":")[2]
            policy = "IfNotPresent" if "@" in ref or (tag and tag != "latest") else "Always"
        return {"Always": "always", "IfNotPresent": "missing", "Never": "never"}[policy]


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str  # emptyDir | hostPath | configMap
    medium: str = ""  # emptyDir: "" or Memory
    size_limit: int | None = None  # emptyDir, bytes
    path: str | None = None  # hostPath
    path_type: str = ""  # hostPath: "", Directory, DirectoryOrCreate, File, FileOrCreate
    config_map: str | None = None  # configMap: the ConfigMap's name
    files: tuple[tuple[str, str], ...] = ()  # configMap: (relative path, content)
    default_mode: int = 0o644


@dataclass(frozen=True)
class PodPlan:
    name: str
    source: str  # Pod | Deployment
    hostname: str | None = None
    host_network: bool = False
    restart_policy: str = "Never"
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()

    def memory(self) -> int | None:
        """The pod's memory limit, as Kubernetes sizes a pod-level cgroup: the sum over
        the containers when each has one, at least the largest init container's."""
        got = _pod_limit([c.memory for c in self.containers],
                         [c.memory for c in self.init_containers])
        return None if got is None else int(got)

    def cpus(self) -> float | None:
        got = _pod_limit([c.cpus for c in self.containers],
                         [c.cpus for c in self.init_containers])
        return None if got is None else float(got)


def _pod_limit(app: list[Any], init: list[Any]) -> float | None:
    if not app or any(v is None for v in app):
        return None
    return float(max([sum(app), *[v for v in init if v is not None]]))


@dataclass
class Manifest:
    pods: list[PodPlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- quantities and $(VAR) ---------------------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)"
                       r"|[eE]([+-]?\d+))?$")
_SUFFIX = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "P": 1e15, "E": 1e18, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
           "Pi": 1 << 50, "Ei": 1 << 60}


def parse_quantity(value: object) -> float:
    """A Kubernetes resource quantity ("128Mi", "500m", "1e9", 2) -> its value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("expected a quantity such as 128Mi or 500m")
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a quantity (such as 128Mi or 500m)")
    number, suffix, exp = m.groups()
    scale = 10.0 ** int(exp) if exp is not None else _SUFFIX[suffix or ""]
    out = float(number) * scale
    if out < 0:
        raise ValueError(f"{value!r} is negative")
    return out


def format_memory(n: int) -> str:
    for suffix, scale in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def format_cpus(x: float) -> str:
    milli = round(x * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """$(VAR) -> env's value (left as is when unset), $$ -> $: the kubelet's rules."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(one, text)
