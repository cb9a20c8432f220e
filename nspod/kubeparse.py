"""Kubernetes manifests read into a kubemodel plan: parse, check types, warn on the rest.

A manifest file is a YAML stream; each `kind: Pod` document, and the pod
template of each `kind: Deployment`, becomes a PodPlan; `kind: ConfigMap`
documents feed the pods' configMap volumes. A wrong type or a malformed value
is a UsageError naming the field's path (`spec.containers[1].ports[0].hostPort:
expected an integer`); a field nspod does not carry over is one warning naming
it, never a silent drop. Pure: no root, no kernel.

PyYAML is imported here only, so no other verb pays for it.
"""

from __future__ import annotations

import os
from typing import Any

from nspod.errors import UsageError
from nspod.kubedoc import Doc, dns_label
from nspod.kubemodel import Container, Manifest, Mount, PodPlan, Port, Volume, parse_quantity

# -- documents ------------------------------------------------------------------------------


_API_VERSIONS = {"Pod": "v1", "ConfigMap": "v1", "Deployment": "apps/v1"}


def load(text: str, source: str) -> Manifest:
    """Every Pod (and Deployment template) of a YAML stream, checked."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader  # C loader when built
    try:
        docs = [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{source}: malformed YAML: {where}{problem}") from None
    out = Manifest()
    multi = len(docs) > 1
    readers = []
    config_maps: dict[str, tuple[tuple[str, str], ...]] = {}
    for i, d in enumerate(docs):
        doc = Doc(f"{source}{f' (document {i + 1})' if multi else ''}: ", out.warnings)
        if not isinstance(d, dict):
            raise UsageError(f"{doc.where}expected a mapping (a Kubernetes object)")
        kind = doc.string(d.get("kind"), "kind", required=True)
        api = doc.string(d.get("apiVersion"), "apiVersion")
        want = _API_VERSIONS.get(kind or "")
        if api is not None and want is not None and api != want:
            raise doc.fail("apiVersion", f"{api!r}: a {kind} is {want}")
        if kind == "ConfigMap":
            name, data = _config_map(doc, d)
            config_maps[name] = data
        elif kind in ("Pod", "Deployment"):
            readers.append((doc, kind, d))
        else:
            doc.warn("kind", f"{kind} not supported, document skipped")
    for doc, kind, d in readers:
        out.pods.append(_deployment(doc, d, config_maps) if kind == "Deployment"
                        else _pod(doc, d, "", config_maps, "Pod"))
    seen: set[str] = set()
    for p in out.pods:
        if p.name in seen:
            raise UsageError(f"{source}: pod {p.name!r} is defined twice")
        seen.add(p.name)
    return out


def _config_map(doc: Doc, d: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    doc.leftovers(d, "", {"apiVersion", "kind", "metadata", "data"})
    meta = doc.mapping(d.get("metadata"), "metadata")
    doc.leftovers(meta, "metadata", {"name"})
    name = dns_label(doc, meta.get("name"), "metadata.name")
    data = doc.string_map(d.get("data"), "data")
    for key, _ in data:
        if not key or key in (".", "..") or "/" in key:
            raise doc.fail(f"data.{key}", "not a valid key")
    return name, data


def _deployment(doc: Doc, d: dict[str, Any],
                config_maps: dict[str, tuple[tuple[str, str], ...]]) -> PodPlan:
    doc.leftovers(d, "", {"apiVersion", "kind", "metadata", "spec"})
    meta = doc.mapping(d.get("metadata"), "metadata")
    doc.leftovers(meta, "metadata", {"name", "labels", "annotations"})
    name = dns_label(doc, meta.get("name"), "metadata.name")
    spec = doc.mapping(d.get("spec"), "spec")
    doc.leftovers(spec, "spec", {"replicas", "selector", "template"})
    replicas = doc.integer(spec.get("replicas"), "spec.replicas", 0)
    if replicas is not None and replicas != 1:
        doc.warn("spec.replicas", f"{replicas}: nspod runs one replica")
    template = doc.mapping(spec.get("template"), "spec.template")
    if not template:
        raise doc.fail("spec.template", "required")
    return _pod(doc, template, "spec.template.", config_maps, "Deployment", name)


def _pod(doc: Doc, d: dict[str, Any], at: str,
         config_maps: dict[str, tuple[tuple[str, str], ...]], source: str,
         name: str | None = None) -> PodPlan:
    top = {"metadata", "spec"} | (set() if at else {"apiVersion", "kind"})
    doc.leftovers(d, at.rstrip("."), top)
    meta = doc.mapping(d.get("metadata"), f"{at}metadata")
    doc.leftovers(meta, f"{at}metadata", {"name", "labels", "annotations"})
    if name is None:
        name = dns_label(doc, meta.get("name"), "metadata.name")
    labels = doc.string_map(meta.get("labels"), f"{at}metadata.labels")
    annotations = doc.string_map(meta.get("annotations"), f"{at}metadata.annotations")
    sp = f"{at}spec"
    spec = doc.mapping(d.get("spec"), sp)
    doc.leftovers(spec, sp, {"containers", "initContainers", "volumes", "hostNetwork",
                             "hostname", "restartPolicy"})
    restart = doc.string(spec.get("restartPolicy"), f"{sp}.restartPolicy") or "Never"
    if restart not in ("Always", "OnFailure", "Never"):
        raise doc.fail(f"{sp}.restartPolicy", f"{restart!r} is not Always, OnFailure or Never")
    if restart != "Never":
        doc.warn(f"{sp}.restartPolicy", f"{restart}: nspod does not restart containers, "
                                        "treated as Never")
    hostname = spec.get("hostname")
    if hostname is not None:
        hostname = dns_label(doc, hostname, f"{sp}.hostname")
    host_network = bool(doc.boolean(spec.get("hostNetwork"), f"{sp}.hostNetwork"))
    volumes = tuple(_volume(doc, v, f"{sp}.volumes[{i}]", config_maps)
                    for i, v in enumerate(doc.seq(spec.get("volumes"), f"{sp}.volumes")))
    names = [v.name for v in volumes]
    if len(set(names)) != len(names):
        raise doc.fail(f"{sp}.volumes", "two volumes have the same name")
    containers = tuple(_container(doc, c, f"{sp}.containers[{i}]", set(names), host_network)
                       for i, c in enumerate(doc.seq(spec.get("containers"),
                                                     f"{sp}.containers")))
    if not containers:
        raise doc.fail(f"{sp}.containers", "at least one container is required")
    inits = tuple(_container(doc, c, f"{sp}.initContainers[{i}]", set(names), host_network,
                             init=True)
                  for i, c in enumerate(doc.seq(spec.get("initContainers"),
                                                f"{sp}.initContainers")))
    every = [c.name for c in (*inits, *containers)]
    if len(set(every)) != len(every):
        raise doc.fail(f"{sp}.containers", "two containers have the same name")
    published = [(p.host_port, p.protocol) for c in containers for p in c.ports if p.host_port]
    if len(set(published)) != len(published):
        raise doc.fail(f"{sp}.containers", "a hostPort is published twice")
    return PodPlan(name=name, source=source, hostname=hostname, host_network=host_network,
                   restart_policy="Never", containers=containers, init_containers=inits,
                   volumes=volumes, labels=labels, annotations=annotations)


_CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "command", "args", "env", "workingDir",
                   "ports", "volumeMounts", "resources", "securityContext"}


def _container(doc: Doc, value: object, at: str, volumes: set[str], host_network: bool,
               init: bool = False) -> Container:
    c = doc.mapping(value, at)
    doc.leftovers(c, at, _CONTAINER_KEYS)
    name = dns_label(doc, c.get("name"), f"{at}.name")
    image = doc.string(c.get("image"), f"{at}.image")
    policy = doc.string(c.get("imagePullPolicy"), f"{at}.imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        raise doc.fail(f"{at}.imagePullPolicy", f"{policy!r} is not Always, IfNotPresent "
                                                "or Never")
    env = []
    for i, e in enumerate(doc.seq(c.get("env"), f"{at}.env")):
        ep = f"{at}.env[{i}]"
        em = doc.mapping(e, ep)
        doc.leftovers(em, ep, {"name", "value"})
        key = doc.string(em.get("name"), f"{ep}.name", required=True)
        assert key is not None
        if not key or "=" in key:
            raise doc.fail(f"{ep}.name", f"{key!r} is not a variable name")
        env.append((key, doc.string(em.get("value"), f"{ep}.value") or ""))
    workdir = doc.string(c.get("workingDir"), f"{at}.workingDir")
    if workdir is not None and not workdir.startswith("/"):
        raise doc.fail(f"{at}.workingDir", "expected an absolute path")
    ports = tuple(_port(doc, p, f"{at}.ports[{i}]", host_network)
                  for i, p in enumerate(doc.seq(c.get("ports"), f"{at}.ports")))
    if init and ports:
        doc.warn(f"{at}.ports", "an init container's ports are not published")
        ports = ()
    mounts = tuple(_mount(doc, m, f"{at}.volumeMounts[{i}]", volumes)
                   for i, m in enumerate(doc.seq(c.get("volumeMounts"), f"{at}.volumeMounts")))
    memory, cpus = _resources(doc, c.get("resources"), f"{at}.resources")
    sec = _security(doc, c.get("securityContext"), f"{at}.securityContext")
    return Container(name=name, image=image, image_pull_policy=policy,
                     command=doc.strings(c.get("command"), f"{at}.command"),
                     args=doc.strings(c.get("args"), f"{at}.args"), env=tuple(env),
                     working_dir=workdir, ports=ports, mounts=mounts, memory=memory, cpus=cpus,
                     **sec)


def _port(doc: Doc, value: object, at: str, host_network: bool) -> Port:
    p = doc.mapping(value, at)
    doc.leftovers(p, at, {"containerPort", "hostPort", "protocol", "name", "hostIP"})
    container = doc.integer(p.get("containerPort"), f"{at}.containerPort", 1, 65535)
    if container is None:
        raise doc.fail(f"{at}.containerPort", "required")
    host = doc.integer(p.get("hostPort"), f"{at}.hostPort", 0, 65535) or None
    proto = doc.string(p.get("protocol"), f"{at}.protocol") or "TCP"
    if proto not in ("TCP", "UDP"):
        raise doc.fail(f"{at}.protocol", f"{proto!r}: nspod publishes TCP or UDP")
    host_ip = doc.string(p.get("hostIP"), f"{at}.hostIP")
    if host_ip is not None:
        import ipaddress

        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise doc.fail(f"{at}.hostIP", f"{host_ip!r} is not an IPv4 address") from None
    if host_network and host is not None and host != container:
        raise doc.fail(f"{at}.hostPort", "must equal containerPort with hostNetwork")
    return Port(container, host, proto, host_ip, doc.string(p.get("name"), f"{at}.name"))


def _clean_relative(doc: Doc, value: str, at: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise doc.fail(at, f"{value!r} must be a relative path without '..'")
    return os.path.normpath(value)


def _mount(doc: Doc, value: object, at: str, volumes: set[str]) -> Mount:
    m = doc.mapping(value, at)
    doc.leftovers(m, at, {"name", "mountPath", "readOnly", "subPath"})
    name = doc.string(m.get("name"), f"{at}.name", required=True)
    assert name is not None
    if name not in volumes:
        raise doc.fail(f"{at}.name", f"no volume named {name!r} in the pod")
    path = doc.string(m.get("mountPath"), f"{at}.mountPath", required=True)
    assert path is not None
    if not path.startswith("/"):
        raise doc.fail(f"{at}.mountPath", "expected an absolute path")
    sub = doc.string(m.get("subPath"), f"{at}.subPath") or None
    if sub is not None:
        sub = _clean_relative(doc, sub, f"{at}.subPath")
    return Mount(name, os.path.normpath(path), bool(doc.boolean(m.get("readOnly"),
                                                                 f"{at}.readOnly")), sub)


def _resources(doc: Doc, value: object, at: str) -> tuple[int | None, float | None]:
    r = doc.mapping(value, at)
    doc.leftovers(r, at, {"limits"})
    limits = doc.mapping(r.get("limits"), f"{at}.limits")
    doc.leftovers(limits, f"{at}.limits", {"memory", "cpu"})
    memory = cpus = None
    try:
        if limits.get("memory") is not None:
            memory = int(-(-parse_quantity(limits["memory"]) // 1))  # whole bytes, rounded up
            if memory < 4096:
                raise ValueError(f"{limits['memory']!r} is less than 4Ki")
    except ValueError as e:
        raise doc.fail(f"{at}.limits.memory", str(e)) from None
    try:
        if limits.get("cpu") is not None:
            cpus = parse_quantity(limits["cpu"])
            if cpus < 0.001:
                raise ValueError(f"{limits['cpu']!r} is less than 1m")
    except ValueError as e:
        raise doc.fail(f"{at}.limits.cpu", str(e)) from None
    return memory, cpus


def _security(doc: Doc, value: object, at: str) -> dict[str, Any]:
    from nspod.security import parse_cap

    s = doc.mapping(value, at)
    doc.leftovers(s, at, {"runAsUser", "runAsGroup", "privileged", "readOnlyRootFilesystem",
                          "capabilities", "allowPrivilegeEscalation", "seccompProfile"})
    caps = doc.mapping(s.get("capabilities"), f"{at}.capabilities")
    doc.leftovers(caps, f"{at}.capabilities", {"add", "drop"})
    out: dict[str, Any] = {}
    for key, field_ in (("add", "cap_add"), ("drop", "cap_drop")):
        names = doc.strings(caps.get(key), f"{at}.capabilities.{key}") or ()
        try:
            out[field_] = tuple(parse_cap(n) for n in names)
        except ValueError as e:
            raise doc.fail(f"{at}.capabilities.{key}", str(e)) from None
    out["run_as_user"] = doc.integer(s.get("runAsUser"), f"{at}.runAsUser", 0, 2**32 - 2)
    out["run_as_group"] = doc.integer(s.get("runAsGroup"), f"{at}.runAsGroup", 0, 2**32 - 2)
    out["privileged"] = bool(doc.boolean(s.get("privileged"), f"{at}.privileged"))
    out["read_only_root"] = bool(doc.boolean(s.get("readOnlyRootFilesystem"),
                                             f"{at}.readOnlyRootFilesystem"))
    ape = doc.boolean(s.get("allowPrivilegeEscalation"), f"{at}.allowPrivilegeEscalation")
    if ape and not out["privileged"]:
        doc.warn(f"{at}.allowPrivilegeEscalation",
                 "true: nspod always sets no_new_privs unless privileged")
    out["allow_privilege_escalation"] = ape
    out["seccomp"] = _seccomp(doc, s.get("seccompProfile"), f"{at}.seccompProfile")
    return out


def _seccomp(doc: Doc, value: object, at: str) -> str | None:
    """seccompProfile: RuntimeDefault (nspod's default filter), Unconfined, or Localhost
    with an absolute localhostProfile (nspod has no kubelet seccomp directory)."""
    p = doc.mapping(value, at)
    doc.leftovers(p, at, {"type", "localhostProfile"})
    kind = doc.string(p.get("type"), f"{at}.type", required=bool(p))
    path = doc.string(p.get("localhostProfile"), f"{at}.localhostProfile")
    if kind in (None, "RuntimeDefault"):
        return None
    if kind == "Unconfined":
        return "unconfined"
    if kind != "Localhost":
        raise doc.fail(f"{at}.type", f"{kind!r} is not RuntimeDefault, Unconfined or Localhost")
    if path is None or not path.startswith("/"):
        raise doc.fail(f"{at}.localhostProfile", "expected an absolute path")
    return path


_HOST_PATH_TYPES = ("", "Directory", "DirectoryOrCreate", "File", "FileOrCreate")


def _volume(doc: Doc, value: object, at: str,
            config_maps: dict[str, tuple[tuple[str, str], ...]]) -> Volume:
    v = doc.mapping(value, at)
    name = dns_label(doc, v.get("name"), f"{at}.name")
    kinds = [k for k in ("emptyDir", "hostPath", "configMap") if k in v]
    others = [k for k in v if k not in ("name", "emptyDir", "hostPath", "configMap")]
    if not kinds:
        raise doc.fail(at, f"volume {name!r}: nspod supports emptyDir, hostPath and configMap"
                           + (f", not {others[0]}" if others else ""))
    if len(kinds) > 1:
        raise doc.fail(at, f"volume {name!r} has more than one source")
    doc.leftovers(v, at, {"name", kinds[0]})
    kind = kinds[0]
    src = doc.mapping(v.get(kind), f"{at}.{kind}")
    if kind == "emptyDir":
        doc.leftovers(src, f"{at}.emptyDir", {"medium", "sizeLimit"})
        medium = doc.string(src.get("medium"), f"{at}.emptyDir.medium") or ""
        if medium not in ("", "Memory"):
            raise doc.fail(f"{at}.emptyDir.medium", f"{medium!r} is not \"\" or Memory")
        size = None
        if src.get("sizeLimit") is not None:
            try:
                size = int(-(-parse_quantity(src["sizeLimit"]) // 1))
            except ValueError as e:
                raise doc.fail(f"{at}.emptyDir.sizeLimit", str(e)) from None
            if medium != "Memory":
                doc.warn(f"{at}.emptyDir.sizeLimit", "enforced only with medium: Memory")
        return Volume(name, kind, medium=medium, size_limit=size)
    if kind == "hostPath":
        doc.leftovers(src, f"{at}.hostPath", {"path", "type"})
        path = doc.string(src.get("path"), f"{at}.hostPath.path", required=True)
        assert path is not None
        if not path.startswith("/"):
            raise doc.fail(f"{at}.hostPath.path", "expected an absolute path")
        ptype = doc.string(src.get("type"), f"{at}.hostPath.type") or ""
        if ptype not in _HOST_PATH_TYPES:
            raise doc.fail(f"{at}.hostPath.type", f"{ptype!r}: nspod supports "
                           + ", ".join(t for t in _HOST_PATH_TYPES if t))
        return Volume(name, kind, path=os.path.normpath(path), path_type=ptype)
    doc.leftovers(src, f"{at}.configMap", {"name", "items", "defaultMode", "optional"})
    cm = doc.string(src.get("name"), f"{at}.configMap.name", required=True)
    assert cm is not None
    optional = bool(doc.boolean(src.get("optional"), f"{at}.configMap.optional"))
    mode = doc.integer(src.get("defaultMode"), f"{at}.configMap.defaultMode", 0, 0o777)
    data = config_maps.get(cm)
    if data is None and not optional:
        raise doc.fail(f"{at}.configMap.name", f"no ConfigMap {cm!r} in the file")
    files = dict(data or ())
    items = doc.seq(src.get("items"), f"{at}.configMap.items")
    if items:
        picked = []
        for i, it in enumerate(items):
            ip = f"{at}.configMap.items[{i}]"
            im = doc.mapping(it, ip)
            doc.leftovers(im, ip, {"key", "path"})
            key = doc.string(im.get("key"), f"{ip}.key", required=True)
            rel = doc.string(im.get("path"), f"{ip}.path", required=True)
            assert key is not None and rel is not None
            if key not in files:
                raise doc.fail(f"{ip}.key", f"no key {key!r} in ConfigMap {cm!r}")
            picked.append((_clean_relative(doc, rel, f"{ip}.path"), files[key]))
        return Volume(name, kind, config_map=cm, files=tuple(picked),
                      default_mode=0o644 if mode is None else mode)
    return Volume(name, kind, config_map=cm, files=tuple(files.items()),
                  default_mode=0o644 if mode is None else mode)
