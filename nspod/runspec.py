"""A detached member as its record keeps it, to be run again: by a restart
(monitor.py), a `start` after a `stop`, or `start --all` after a reboot.

Imported by join only for detached members (a few dict entries), and for
supervise() only when --restart or --health-cmd is given.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nspod.member import JoinSpec


def record_fields(spec: JoinSpec) -> dict[str, Any]:
    """The record's fields that run the member again: its spec and policy."""
    out: dict[str, Any] = {
        "spec": {
            "argv": spec.argv, "env": spec.env, "cwd": spec.cwd, "user": spec.user,
            "rootfs": spec.rootfs, "volumes": [v.to_list() for v in spec.volumes],
            "read_only": spec.read_only,
            "security": spec.security.to_spec() if spec.security is not None else None,
            "log_max_size": spec.log_max_size,
            "seccomp": spec.seccomp, "mix_roots": spec.mix_roots,
            # argv, env, cwd, user above are the image's where the join gave none
            "image": spec.image,
        },
        "restart": spec.restart,
    }
    if spec.health:
        out["health"] = spec.health
    if spec.carry:
        out.update(spec.carry)
    return out


def join_spec(pod: str, name: str, rec: dict[str, Any]) -> JoinSpec:
    """The detached member rec describes, as a join of it."""
    from nspod import rootfs, security
    from nspod.member import LOG_MAX_SIZE, JoinSpec

    s = rec["spec"]
    return JoinSpec(pod, list(s["argv"]), dict(s["env"]), s.get("cwd"), True, name,
                    security=(security.SecurityOpts.from_spec(s["security"])
                              if s.get("security") else None),
                    user=s.get("user"), rootfs=s.get("rootfs"),
                    volumes=tuple(rootfs.Volume.from_list(v) for v in s.get("volumes", ())),
                    read_only=bool(s.get("read_only")), restart=rec.get("restart", "no"),
                    health=rec.get("health"),
                    log_max_size=int(s.get("log_max_size", LOG_MAX_SIZE)),
                    seccomp=s.get("seccomp"), mix_roots=bool(s.get("mix_roots")),
                    image=s.get("image"))


def supervise(pod_dir: str, spec: JoinSpec) -> None:
    """A member that asked for a policy or a health check has started: make
    sure the pod's monitor runs (it also keeps what a reboot needs of it)."""
    if spec.carry is None:  # a restart comes from the monitor itself
        from nspod import monitor

        monitor.want(pod_dir)
