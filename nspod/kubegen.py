"""Pods written out as Kubernetes manifests: a plan rendered, a running pod described.

A pod made by `kube play` carries its manifest (rendered from the plan, with
the root filesystem each container ran in as a `rootfs.nspod.io/NAME`
annotation); `generate` prints it, with the members joined since. A pod made
by `create` and `join` is described from its record: its ports, limits,
capabilities and volumes, and its detached members' commands.
"""

from __future__ import annotations

from typing import Any

from nspod.errors import NspodError
from nspod.kubemodel import Container, PodPlan, Volume, format_cpus, format_memory

ROOTFS_ANNOTATION = "rootfs.nspod.io/"  # + container name: the directory it ran in
PLACEHOLDER_IMAGE = "localhost/nspod-rootfs"  # a container that ran in a directory


def _container(c: Container) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name}
    if c.image is not None:
        out["image"] = c.image
    if c.image_pull_policy is not None:
        out["imagePullPolicy"] = c.image_pull_policy
    if c.command is not None:
        out["command"] = list(c.command)
    if c.args is not None:
        out["args"] = list(c.args)
    if c.env:
        out["env"] = [{"name": k, "value": v} for k, v in c.env]
    if c.working_dir is not None:
        out["workingDir"] = c.working_dir
    if c.ports:
        ports = []
        for p in c.ports:
            d: dict[str, Any] = {"containerPort": p.container_port}
            if p.name:
                d["name"] = p.name
            if p.host_port:
                d["hostPort"] = p.host_port
            if p.host_ip:
                d["hostIP"] = p.host_ip
            d["protocol"] = p.protocol
            ports.append(d)
        out["ports"] = ports
    if c.mounts:
        mounts = []
        for m in c.mounts:
            md: dict[str, Any] = {"name": m.name, "mountPath": m.mount_path}
            if m.read_only:
                md["readOnly"] = True
            if m.sub_path:
                md["subPath"] = m.sub_path
            mounts.append(md)
        out["volumeMounts"] = mounts
    limits: dict[str, str] = {}
    if c.memory is not None:
        limits["memory"] = format_memory(c.memory)
    if c.cpus is not None:
        limits["cpu"] = format_cpus(c.cpus)
    if limits:
        out["resources"] = {"limits": limits}
    sec: dict[str, Any] = {}
    if c.run_as_user is not None:
        sec["runAsUser"] = c.run_as_user
    if c.run_as_group is not None:
        sec["runAsGroup"] = c.run_as_group
    if c.privileged:
        sec["privileged"] = True
    if c.read_only_root:
        sec["readOnlyRootFilesystem"] = True
    if c.allow_privilege_escalation is not None:
        sec["allowPrivilegeEscalation"] = c.allow_privilege_escalation
    if c.seccomp == "unconfined":
        sec["seccompProfile"] = {"type": "Unconfined"}
    elif c.seccomp is not None:
        sec["seccompProfile"] = {"type": "Localhost", "localhostProfile": c.seccomp}
    caps: dict[str, list[str]] = {}
    if c.cap_add:
        caps["add"] = list(c.cap_add)
    if c.cap_drop:
        caps["drop"] = list(c.cap_drop)
    if caps:
        sec["capabilities"] = caps
    if sec:
        out["securityContext"] = sec
    return out


def _volume(v: Volume) -> dict[str, Any]:
    if v.kind == "emptyDir":
        src: dict[str, Any] = {}
        if v.medium:
            src["medium"] = v.medium
        if v.size_limit is not None:
            src["sizeLimit"] = format_memory(v.size_limit)
        return {"name": v.name, "emptyDir": src}
    if v.kind == "hostPath":
        hp: dict[str, Any] = {"path": v.path}
        if v.path_type:
            hp["type"] = v.path_type
        return {"name": v.name, "hostPath": hp}
    cm: dict[str, Any] = {"name": v.config_map,
                          "items": [{"key": _key(p), "path": p} for p, _ in v.files]}
    if v.default_mode != 0o644:
        cm["defaultMode"] = v.default_mode
    return {"name": v.name, "configMap": cm}


def _key(path: str) -> str:
    """The ConfigMap key a volume file is written from: its path, '/' -> '_'."""
    return path.replace("/", "_")


def config_maps(plan: PodPlan) -> list[dict[str, Any]]:
    """One ConfigMap per configMap volume, holding exactly the files it mounts."""
    data: dict[str, dict[str, str]] = {}
    for v in plan.volumes:
        if v.kind == "configMap" and v.config_map is not None:
            data.setdefault(v.config_map, {}).update((_key(p), text) for p, text in v.files)
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": d}
            for name, d in data.items()]


def render(plan: PodPlan, rootfs: dict[str, str] | None = None) -> dict[str, Any]:
    """The Pod manifest of a plan; rootfs: container -> directory it runs in."""
    meta: dict[str, Any] = {"name": plan.name}
    if plan.labels:
        meta["labels"] = dict(plan.labels)
    annotations = dict(plan.annotations)
    for name, path in sorted((rootfs or {}).items()):
        annotations[ROOTFS_ANNOTATION + name] = path
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {}
    if plan.hostname is not None:
        spec["hostname"] = plan.hostname
    if plan.host_network:
        spec["hostNetwork"] = True
    spec["restartPolicy"] = "Never"
    if plan.init_containers:
        spec["initContainers"] = [_container(c) for c in plan.init_containers]
    spec["containers"] = [_container(c) for c in plan.containers]
    for c, out in zip((*plan.init_containers, *plan.containers),
                      (*spec.get("initContainers", []), *spec["containers"]), strict=True):
        if c.image is None:  # a cluster wants one: it ran in a directory or the host's files
            out["image"] = PLACEHOLDER_IMAGE
    if plan.volumes:
        spec["volumes"] = [_volume(v) for v in plan.volumes]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


_FIRST = ("apiVersion", "kind", "metadata", "name", "image")


def _ordered(obj: Any) -> Any:
    """Keys in the order kubectl shows them: apiVersion, kind, metadata, name first."""
    if isinstance(obj, dict):
        keys = [k for k in _FIRST if k in obj] + [k for k in obj if k not in _FIRST]
        return {k: _ordered(obj[k]) for k in keys}
    if isinstance(obj, list):
        return [_ordered(v) for v in obj]
    return obj


def dump(docs: list[dict[str, Any]]) -> str:
    import yaml

    docs = [_ordered(d) for d in docs]
    dumper = getattr(yaml, "CSafeDumper", None) or yaml.SafeDumper
    return str(yaml.dump_all(docs, Dumper=dumper, sort_keys=False, default_flow_style=False,
                             explicit_start=len(docs) > 1))


# -- describing a pod -------------------------------------------------------------------


def describe(rec: dict[str, Any], members: list[dict[str, Any]],
             kube: dict[str, Any] | None, images: dict[str, str] | None = None,
             facts: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The manifest documents of a pod: record (pod.json), its members (member.ps),
    what kube play made it from, if it did; else the image each member ran (by
    name) and what its process shows (environment, user: kubeplay._process_facts)."""
    if kube is not None:
        pod = kube["pod"]
        known = {c["name"] for c in pod["spec"]["containers"]}
        known |= {c["name"] for c in pod["spec"].get("initContainers", [])}
        extra = [m for m in members if m["detached"] and m["name"] not in known
                 and m["state"] == "running"]
        for m in extra:
            pod["spec"]["containers"].append({"name": m["name"], "image": PLACEHOLDER_IMAGE,
                                              "command": m["command"]})
        return [*kube.get("configMaps", []), pod]
    return [_from_record(rec, members, images or {}, facts or {})]


def _from_record(rec: dict[str, Any], members: list[dict[str, Any]],
                 images: dict[str, str], facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from nspod.kubemodel import Mount, Port

    spec = rec.get("spec", {})
    running = [m for m in members if m["detached"] and m["state"] == "running"]
    if not running:
        raise NspodError(f'generate pod "{rec["name"]}": no running detached member to '
                         "describe as a container (join -d one first)")
    volumes = tuple(Volume(f"volume-{i}", "hostPath", path=str(v[0]))
                    for i, v in enumerate(spec.get("volumes", [])))
    mounts = tuple(Mount(f"volume-{i}", str(v[1]), bool(v[2]))
                   for i, v in enumerate(spec.get("volumes", [])))
    ports = tuple(Port(int(p["pod_port"]), int(p["host_port"]), str(p["proto"]).upper(),
                       p.get("host_ip") or None) for p in spec.get("ports", []))
    containers = []
    for i, m in enumerate(running):
        image = images.get(m["name"])
        seen = facts.get(m["name"], {})
        containers.append(Container(
            name=_label(m["name"]), image=image or PLACEHOLDER_IMAGE,
            # a stored image: found again where it is, never pulled for :latest
            image_pull_policy="IfNotPresent" if image else None,
            # $ doubled: the command ran as given, and Kubernetes expands $(VAR)
            command=tuple(a.replace("$", "$$") for a in m["command"]),
            env=tuple(seen.get("env", ())),
            run_as_user=seen["uid"] if seen.get("uid") or seen.get("gid") else None,
            run_as_group=seen["gid"] if seen.get("uid") or seen.get("gid") else None,
            ports=ports if i == 0 else (), mounts=mounts,
            memory=spec.get("memory") if i == 0 else None,
            cpus=spec.get("cpus") if i == 0 else None,
            privileged=bool(spec.get("privileged")),
            read_only_root=bool(spec.get("read_only")) and bool(spec.get("rootfs")),
            cap_add=tuple(spec.get("cap_add") or ()), cap_drop=tuple(spec.get("cap_drop") or ())))
    if len(containers) > 1 and spec.get("memory") is not None:
        # the pod's limit on the first container only: the others get none, and
        # Kubernetes then sizes no pod-level limit; spread it instead
        share = int(spec["memory"]) // len(containers)
        containers = [_with(c, memory=share) for c in containers]
        rest = int(spec["memory"]) - share * (len(containers) - 1)
        containers[0] = _with(containers[0], memory=rest)
    if len(containers) > 1 and spec.get("cpus") is not None:
        share_c = float(spec["cpus"]) / len(containers)
        containers = [_with(c, cpus=share_c) for c in containers]
    root = spec.get("rootfs")
    plan = PodPlan(name=rec["name"], source="Pod",
                   hostname=rec.get("hostname") if rec.get("hostname") != rec["name"] else None,
                   host_network=spec.get("net") == "host", containers=tuple(containers),
                   volumes=volumes)
    return render(plan, {c.name: root or "/" for c in containers
                         if c.image == PLACEHOLDER_IMAGE})


def _with(c: Container, **changes: Any) -> Container:
    import dataclasses

    return dataclasses.replace(c, **changes)


def _label(name: str) -> str:
    """A member name as a Kubernetes container name (a DNS label)."""
    out = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")[:63]
    return out or "member"
