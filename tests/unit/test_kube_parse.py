"""kube manifests read into plans: types, paths in errors, warnings, limits, rendering.

Rendered manifests are checked against Kubernetes' own OpenAPI schema for Pod
(kubernetes-validate, which ships the schemas of each Kubernetes release).
"""

import subprocess
import sys
import textwrap

import pytest

from nspod.errors import UsageError
from nspod.kubegen import config_maps, dump, render
from nspod.kubemodel import expand, format_cpus, format_memory, parse_quantity
from nspod.kubeparse import load

TWO = """\
apiVersion: v1
kind: Pod
metadata:
  name: two-containers
spec:
  restartPolicy: Never
  volumes:
  - name: shared-data
    emptyDir: {}
  containers:
  - name: nginx-container
    image: nginx
    volumeMounts:
    - name: shared-data
      mountPath: /usr/share/nginx/html
  - name: debian-container
    image: debian
    volumeMounts:
    - name: shared-data
      mountPath: /pod-data
    command: ["/bin/sh"]
    args: ["-c", "echo Hello from the debian container > /pod-data/index.html"]
"""

FULL = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  index.html: hello
  app.conf: |
    port=80
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  hostname: webhost
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, "echo init > /work/index.html"]
    resources: {limits: {memory: 64Mi}}
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: busybox
    command: [httpd, -f, -p, "$(PORT)"]
    env: [{name: PORT, value: "80"}]
    workingDir: /work
    ports: [{containerPort: 80, hostPort: 18080}, {containerPort: 53, protocol: UDP}]
    resources: {limits: {memory: 16Mi, cpu: 500m}}
    securityContext:
      runAsUser: 33
      runAsGroup: 33
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: conf, mountPath: /etc/app, readOnly: true}
    - {name: host, mountPath: /host, subPath: sub/dir}
  - name: side
    image: busybox
    command: [sleep, "1000"]
    resources: {limits: {memory: 8Mi, cpu: "1"}}
    securityContext: {seccompProfile: {type: Localhost, localhostProfile: /etc/p.json}}
  volumes:
  - name: work
    emptyDir: {medium: Memory, sizeLimit: 8Mi}
  - name: conf
    configMap: {name: web-config}
  - name: host
    hostPath: {path: /srv/data, type: DirectoryOrCreate}
"""


def error(text: str) -> str:
    with pytest.raises(UsageError) as e:
        load(text, "m.yaml")
    assert e.value.code == 2
    return str(e.value)


def validate(doc: dict) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    kv.validate(doc, kv.latest_version(), strict=True)


def test_two_containers_share_an_empty_dir():
    m = load(TWO, "two.yaml")
    (pod,) = m.pods
    assert pod.name == "two-containers" and m.warnings == []
    assert [c.name for c in pod.containers] == ["nginx-container", "debian-container"]
    assert pod.volumes[0].kind == "emptyDir"
    assert pod.containers[1].argv() == ["/bin/sh", "-c", "echo Hello from the debian container"
                                        " > /pod-data/index.html"]
    assert [mt.mount_path for c in pod.containers for mt in c.mounts] == [
        "/usr/share/nginx/html", "/pod-data"]


def test_every_supported_field():
    m = load(FULL, "full.yaml")
    assert m.warnings == []
    (pod,) = m.pods
    app, side = pod.containers
    assert pod.hostname == "webhost" and dict(pod.labels) == {"app": "web"}
    assert app.argv() == ["httpd", "-f", "-p", "80"]  # $(PORT) expanded from env
    assert app.working_dir == "/work"
    assert [(p.container_port, p.host_port, p.protocol) for p in app.ports] == [
        (80, 18080, "TCP"), (53, None, "UDP")]
    assert (app.run_as_user, app.run_as_group, app.read_only_root) == (33, 33, True)
    assert (app.cap_add, app.cap_drop) == (("NET_ADMIN",), ("ALL",))
    assert app.mounts[1].read_only and app.mounts[2].sub_path == "sub/dir"
    work, conf, host = pod.volumes
    assert (work.medium, work.size_limit) == ("Memory", 8 << 20)
    assert dict(conf.files) == {"index.html": "hello", "app.conf": "port=80\n"}
    assert (host.path, host.path_type) == ("/srv/data", "DirectoryOrCreate")
    assert (app.seccomp, side.seccomp) == (None, "/etc/p.json")
    # summed into the pod's cgroup, at least the largest init container's
    assert pod.memory() == 64 << 20
    assert pod.cpus() == 1.5


def test_limits_sum_only_when_every_container_has_one():
    text = TWO.replace("    image: nginx\n",
                       "    image: nginx\n    resources: {limits: {memory: 32Mi}}\n")
    assert load(text, "x").pods[0].memory() is None
    both = text.replace("    image: debian\n",
                        "    image: debian\n    resources: {limits: {memory: 16Mi}}\n")
    assert load(both, "x").pods[0].memory() == 48 << 20


@pytest.mark.parametrize("mutate, message", [
    (("hostPort: 18080", "hostPort: high"),
     "full.yaml (document 2): spec.containers[0].ports[0].hostPort: expected an integer"),
    (("hostPort: 18080", "hostPort: 70000"),
     "full.yaml (document 2): spec.containers[0].ports[0].hostPort: 70000 is out of range "
     "0-65535"),
    (("memory: 16Mi", "memory: lots"),
     "full.yaml (document 2): spec.containers[0].resources.limits.memory: 'lots' is not a "
     "quantity (such as 128Mi or 500m)"),
    (('value: "80"', "value: 80"),
     "full.yaml (document 2): spec.containers[0].env[0].value: expected a string"),
    (("runAsUser: 33", "runAsUser: nobody"),
     "full.yaml (document 2): spec.containers[0].securityContext.runAsUser: expected an "
     "integer"),
    (("add: [NET_ADMIN]", "add: [NET_WIZARD]"),
     "full.yaml (document 2): spec.containers[0].securityContext.capabilities.add: unknown "
     "capability 'NET_WIZARD'"),
    (("name: web-config}", "name: other}"),
     "full.yaml (document 2): spec.volumes[1].configMap.name: no ConfigMap 'other' in the "
     "file"),
    (("{name: work, mountPath: /work}\n    -", "{name: wrok, mountPath: /work}\n    -"),
     "full.yaml (document 2): spec.containers[0].volumeMounts[0].name: no volume named "
     "'wrok' in the pod"),
    (("subPath: sub/dir", "subPath: ../../etc"),
     "full.yaml (document 2): spec.containers[0].volumeMounts[2].subPath: '../../etc' must "
     "be a relative path without '..'"),
    (("type: Localhost, localhostProfile: /etc/p.json", "type: Localhost, localhostProfile: p"),
     "full.yaml (document 2): spec.containers[1].securityContext.seccompProfile."
     "localhostProfile: expected an absolute path"),
    (("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: yes please"),
     "full.yaml (document 2): spec.containers[0].securityContext.readOnlyRootFilesystem: "
     "expected true or false"),
])
def test_a_wrong_field_is_named_by_its_path(mutate, message):
    old, new = mutate
    assert old in FULL
    with pytest.raises(UsageError) as e:
        load(FULL.replace(old, new, 1), "full.yaml")
    assert str(e.value) == message


def test_structure_errors():
    assert error("kind: Pod\nmetadata: {name: a}\nspec: {containers: {}}\n") == (
        "m.yaml: spec.containers: expected a list")
    assert error("kind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n") == (
        "m.yaml: spec.containers: at least one container is required")
    assert error("kind: Pod\nmetadata: {name: Bad_Name}\nspec: {}\n").startswith(
        "m.yaml: metadata.name: 'Bad_Name' is not a valid name")
    assert error("- a\n- b\n") == "m.yaml: expected a mapping (a Kubernetes object)"
    assert error("kind: Pod\nmetadata: {name: a\n").startswith("m.yaml: malformed YAML: line")
    assert error("apiVersion: apps/v1\nkind: Pod\nmetadata: {name: a}\n") == (
        "m.yaml: apiVersion: 'apps/v1': a Pod is v1")


def test_unsupported_fields_warn_one_line_each():
    text = TWO.replace("  restartPolicy: Never\n", "  restartPolicy: Always\n  dnsPolicy: "
                       "ClusterFirst\n").replace(
        "    image: nginx\n", "    image: nginx\n    livenessProbe: {exec: {command: [true]}}\n"
        "    resources: {requests: {cpu: 1}}\n"
        "    env: [{name: A, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n")
    m = load(text + "---\nkind: Service\nmetadata: {name: s}\n", "w.yaml")
    assert m.warnings == [
        "w.yaml (document 2): kind: Service not supported, document skipped",
        "w.yaml (document 1): spec.dnsPolicy: not supported, ignored",
        "w.yaml (document 1): spec.restartPolicy: Always: nspod does not restart containers, "
        "treated as Never",
        "w.yaml (document 1): spec.containers[0].livenessProbe: not supported, ignored",
        "w.yaml (document 1): spec.containers[0].env[0].valueFrom: not supported, ignored",
        "w.yaml (document 1): spec.containers[0].resources.requests: not supported, ignored",
    ]


def test_deployment_template_is_one_pod():
    text = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, labels: {app: web}}
        spec:
          replicas: 3
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: c, image: busybox, command: [sleep, "1"]}]
        """)
    m = load(text, "d.yaml")
    (pod,) = m.pods
    assert (pod.name, pod.source, dict(pod.labels)) == ("web", "Deployment", {"app": "web"})
    assert m.warnings == ["d.yaml: spec.replicas: 3: nspod runs one replica"]


def test_quantities_and_expansion():
    assert parse_quantity("128Mi") == 128 << 20
    assert parse_quantity("1G") == 1e9
    assert parse_quantity("500m") == 0.5
    assert parse_quantity(2) == 2
    assert parse_quantity("1e3") == 1000
    for bad in ("12 Mi", "Mi", True, "-1", "1.5.2"):
        with pytest.raises(ValueError):
            parse_quantity(bad)
    assert (format_memory(64 << 20), format_memory(1000), format_cpus(0.5),
            format_cpus(2.0)) == ("64Mi", "1000", "500m", "2")
    assert expand("$(A)-$(B)-$$(A)", {"A": "x"}) == "x-$(B)-$(A)"


@pytest.mark.parametrize("text", [TWO, FULL])
def test_rendered_manifest_is_a_valid_pod_and_reads_back_the_same(text):
    (plan,) = load(text, "x").pods
    doc = render(plan, {c.name: "/srv/busybox" for c in plan.containers})
    validate(doc)
    again = load(dump([*config_maps(plan), doc]), "generated")
    assert again.warnings == []
    (back,) = again.pods
    assert back.containers == plan.containers
    assert back.init_containers == plan.init_containers
    assert [v.files if v.kind == "configMap" else v for v in back.volumes] == [
        v.files if v.kind == "configMap" else v for v in plan.volumes]
    assert (back.hostname, back.memory(), back.cpus()) == (plan.hostname, plan.memory(),
                                                           plan.cpus())


def test_the_validator_rejects_what_a_cluster_would():
    """The schema check used above is the real one: a wrong type fails it."""
    kv = pytest.importorskip("kubernetes_validate")
    (plan,) = load(TWO, "x").pods
    doc = render(plan)
    doc["spec"]["containers"][0]["ports"] = [{"containerPort": "80"}]
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, kv.latest_version(), strict=True)


def test_yaml_is_imported_by_kube_only():
    code = ("import sys; import nspod.cli, nspod.member, nspod.pod; "
            "print('yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                         check=True).stdout
    assert out.strip() == "False"
