"""kube play / down / generate on the real kernel.

The manifests are the classic ones of the Kubernetes documentation's tasks
(two containers sharing an emptyDir, nginx with a hostPort, an init container
preparing what the app serves, resources.limits), rewritten to an image the
suite builds from its busybox root (`nspod image import`, then found in the
store by play). Each is played, checked from the host, and brought down; the
pod_env fixture fails the test on anything left. One image comes from a
registry on 127.0.0.1 (test_image's fixture), pulled by play itself.
"""

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOTFS, PodEnv
from test_image import Registry, registry  # noqa: F401 - the registry fixture

IMAGE = "localhost/kube-busybox:1"

pytestmark = pytest.mark.root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    assert port > 10000
    return int(port)


@pytest.fixture
def busybox(pod_env: PodEnv, tmp_path: Path) -> Path:
    """IMAGE in the test's image store, made from the suite's busybox root; and a copy
    of that root as a directory, for the tests that run containers in one."""
    tarball = tmp_path / "busybox.tar"
    subprocess.run(["tar", "-C", str(ROOTFS), "-cf", str(tarball), "."], check=True)
    pod_env.run("image", "import", str(tarball), IMAGE.removeprefix("localhost/"), check=True)
    root = tmp_path / "busybox"
    shutil.copytree(ROOTFS, root, symlinks=True)
    return root


def play(e: PodEnv, text: str, tmp: Path, busybox: Path, *args: str, name: str = "m.yaml"):
    path = tmp / name
    path.write_text(text.replace("image: busybox", f"image: {IMAGE}"))
    r = e.run("kube", "play", *args, str(path))
    for pod in r.stdout.split():
        e.pods_seen.add(pod)
    return r


def down(e: PodEnv, tmp: Path, name: str = "m.yaml") -> None:
    r = e.run("kube", "down", "-t", "1", str(tmp / name))
    assert r.returncode == 0, r.stderr
    assert e.run("ls", "-q").stdout.split() == []
    assert not any((e.root / "pods").iterdir())


def ps(e: PodEnv, pod: str) -> dict[str, dict]:
    return {m["name"]: m for m in json.loads(e.run("ps", pod, "--json", check=True).stdout)}


def wait_for(what, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def fetch(port: int) -> str:
    import urllib.request

    def once() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return str(r.read().decode().strip())
        except OSError:
            return ""

    return str(wait_for(once))


def logs(e: PodEnv, pod: str, name: str) -> str:
    return e.run("logs", pod, name).stdout


TWO = """\
apiVersion: v1
kind: Pod
metadata:
  name: two-containers
spec:
  restartPolicy: Never
  hostname: shared
  volumes:
  - name: shared-data
    emptyDir: {}
  containers:
  - name: nginx-container
    image: busybox
    command: [sh, -c, "while [ ! -s /usr/share/nginx/html/index.html ]; do sleep 0.1; done;
      cat /usr/share/nginx/html/index.html; hostname; sleep 1000"]
    volumeMounts:
    - name: shared-data
      mountPath: /usr/share/nginx/html
  - name: debian-container
    image: busybox
    volumeMounts:
    - name: shared-data
      mountPath: /pod-data
    command: ["/bin/sh"]
    args: ["-c", "echo Hello from the debian container > /pod-data/index.html; sleep 1000"]
"""


def test_two_containers_share_an_empty_dir(pod_env: PodEnv, tmp_path: Path, busybox: Path):
    r = play(pod_env, TWO, tmp_path, busybox)
    assert (r.returncode, r.stdout, r.stderr) == (0, "two-containers\n", "")
    members = ps(pod_env, "two-containers")
    assert {n: m["state"] for n, m in members.items()} == {
        "nginx-container": "running", "debian-container": "running"}
    # the file one container wrote, seen by the other and from the host
    seen = wait_for(lambda: "shared" in logs(pod_env, "two-containers", "nginx-container"))
    assert seen, logs(pod_env, "two-containers", "nginx-container")
    assert logs(pod_env, "two-containers", "nginx-container").split("\n")[:2] == [
        "Hello from the debian container", "shared"]
    vol = pod_env.root / "pods/two-containers/volumes/shared-data/index.html"
    assert vol.read_text() == "Hello from the debian container\n"
    down(pod_env, tmp_path)


NGINX = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: site
data:
  index.html: hello from a configMap
---
apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  containers:
  - name: nginx
    image: busybox
    command: [httpd, -f, -p, "$(PORT)", -h, /usr/share/nginx/html]
    env:
    - name: PORT
      value: "80"
    ports:
    - containerPort: 80
      hostPort: HOSTPORT
    volumeMounts:
    - name: site
      mountPath: /usr/share/nginx/html/index.html
      subPath: index.html
  volumes:
  - name: site
    configMap:
      name: site
"""


def test_nginx_with_a_host_port(pod_env: PodEnv, tmp_path: Path, busybox: Path):
    port = free_port()
    r = play(pod_env, NGINX.replace("HOSTPORT", str(port)), tmp_path, busybox)
    assert r.returncode == 0, r.stderr
    assert fetch(port) == "hello from a configMap"
    # what the pod was played from, env values included, is root's only
    assert (pod_env.root / "pods/nginx/kube.json").stat().st_mode & 0o777 == 0o600
    assert pod_env.inspect("nginx")["ports"] == [
        {"host_ip": "", "host_port": port, "pod_port": 80, "proto": "tcp"}]
    down(pod_env, tmp_path)
    assert not _answers(port)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


INIT = """\
apiVersion: v1
kind: Pod
metadata:
  name: init-demo
spec:
  containers:
  - name: nginx
    image: busybox
    command: [httpd, -f, -p, "80", -h, /usr/share/nginx/html]
    ports:
    - containerPort: 80
      hostPort: HOSTPORT
    volumeMounts:
    - name: workdir
      mountPath: /usr/share/nginx/html
  initContainers:
  - name: install
    image: busybox
    command: [sh, -c, "echo prepared by the init container > /work-dir/index.html"]
    volumeMounts:
    - name: workdir
      mountPath: /work-dir
  - name: check
    image: busybox
    command: [sh, -c, "test -s /work-dir/index.html"]
    volumeMounts:
    - name: workdir
      mountPath: /work-dir
  dnsPolicy: Default
  volumes:
  - name: workdir
    emptyDir:
      medium: Memory
"""


def test_init_containers_run_first_and_the_app_serves_their_output(
        pod_env: PodEnv, tmp_path: Path, busybox: Path):
    port = free_port()
    r = play(pod_env, INIT.replace("HOSTPORT", str(port)), tmp_path, busybox)
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"nspod: warning: {tmp_path}/m.yaml: spec.dnsPolicy: not supported, "
                        "ignored\n")
    assert fetch(port) == "prepared by the init container"
    members = ps(pod_env, "init-demo")
    assert [members[n]["state"] for n in ("install", "check", "nginx")] == [
        "exited (0)", "exited (0)", "running"]
    assert members["install"]["finished"] <= members["check"]["started"]
    assert members["check"]["finished"] <= members["nginx"]["started"]
    # medium: Memory is a tmpfs in the pod, never on the host
    mounts = Path(f"/proc/{members['nginx']['pid']}/mounts").read_text()
    assert any(line.split()[1:3] == ["/usr/share/nginx/html", "tmpfs"]
               for line in mounts.splitlines()), mounts
    vol = str(pod_env.root / "pods/init-demo/volumes/workdir")
    assert vol not in Path("/proc/self/mounts").read_text()
    down(pod_env, tmp_path)


LIMITS = """\
apiVersion: v1
kind: Pod
metadata:
  name: memory-demo
spec:
  containers:
  - name: memory-demo-ctr
    image: busybox
    resources:
      limits:
        memory: "40Mi"
        cpu: 500m
    command: [sleep, "1000"]
  - name: hog
    image: busybox
    resources:
      limits:
        memory: "24Mi"
        cpu: "1"
    command: [sh, -c, "sleep 0.5; dd if=/dev/zero of=/dev/null bs=100M count=1"]
"""


def test_resource_limits_are_summed_into_the_pod_and_enforced(
        pod_env: PodEnv, tmp_path: Path, busybox: Path):
    r = play(pod_env, LIMITS, tmp_path, busybox)
    assert r.returncode == 0, r.stderr
    limits = pod_env.inspect("memory-demo")["limits"]
    assert (limits["memory"], limits["cpus"]) == (64 << 20, 1.5)
    hog = wait_for(lambda: ps(pod_env, "memory-demo")["hog"]["state"] != "running")
    assert hog
    states = {n: m["state"] for n, m in ps(pod_env, "memory-demo").items()}
    assert states == {"memory-demo-ctr": "running", "hog": "killed (SIGKILL, out of memory)"}
    down(pod_env, tmp_path)


@pytest.mark.parametrize("manifest", ["TWO", "NGINX", "INIT", "LIMITS"])
def test_generate_then_play_gives_the_same_pod(pod_env: PodEnv, tmp_path: Path, busybox: Path,
                                               manifest: str):
    kv = pytest.importorskip("kubernetes_validate")
    import yaml

    port = free_port()
    text = globals()[manifest].replace("HOSTPORT", str(port))
    assert play(pod_env, text, tmp_path, busybox).returncode == 0
    pod = yaml.safe_load(text.split("---")[-1])["metadata"]["name"]

    def facts() -> tuple:
        i = pod_env.inspect(pod)
        members = {n: (m["command"], m["state"] == "running") for n, m in ps(pod_env, pod).items()}
        return (i["hostname"], i["net"], i["ports"], i["limits"], i["security"], members)

    if manifest == "LIMITS":  # the hog has been killed
        wait_for(lambda: ps(pod_env, pod)["hog"]["state"] != "running")
    before = facts()
    gen = pod_env.run("kube", "generate", pod, check=True).stdout
    docs = list(yaml.safe_load_all(gen))
    assert docs[-1]["kind"] == "Pod"
    kv.validate(docs[-1], kv.latest_version(), strict=True)
    down(pod_env, tmp_path)
    assert IMAGE in gen and "rootfs.nspod.io" not in gen
    (tmp_path / "gen.yaml").write_text(gen)
    r = pod_env.run("kube", "play", str(tmp_path / "gen.yaml"))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    if manifest == "LIMITS":  # wait until the hog has been killed again
        wait_for(lambda: ps(pod_env, pod)["hog"]["state"] != "running")
    assert facts() == before
    assert pod_env.run("kube", "generate", pod, check=True).stdout == gen
    if manifest in ("NGINX", "INIT"):
        assert fetch(port)
    down(pod_env, tmp_path, "gen.yaml")


def test_generate_describes_a_pod_made_by_hand(pod_env: PodEnv, tmp_path: Path, busybox: Path):
    kv = pytest.importorskip("kubernetes_validate")
    import yaml

    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www/index.html").write_text("by hand\n")
    pod = pod_env.create("byhand", "-p", f"{port}:8080", "--memory", "64M", "--rootfs",
                         str(busybox), "-v", f"{tmp_path / 'www'}:/www:ro", "--cap-drop",
                         "NET_RAW")
    pod_env.run("join", "-d", "--name", "web", pod, "--", "httpd", "-f", "-p", "8080", "-h",
                "/www", check=True)
    pod_env.run("join", "-d", "--name", "env", "-e", "GREETING=hi $(there)", "-u", "33:100",
                pod, "--", "sh", "-c", "echo $GREETING; id -u; id -g; sleep 1000", check=True)
    assert fetch(port) == "by hand"
    gen = pod_env.run("kube", "generate", pod, check=True).stdout
    (doc,) = yaml.safe_load_all(gen)
    kv.validate(doc, kv.latest_version(), strict=True)
    before = pod_env.inspect(pod)
    caps = caps_of(pod_env, pod, "web")
    pod_env.run("rm", "-f", "-t", "0", pod, check=True)
    (tmp_path / "gen.yaml").write_text(gen)
    r = pod_env.run("kube", "play", str(tmp_path / "gen.yaml"))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    after = pod_env.inspect(pod)
    assert (after["ports"], after["limits"]) == (before["ports"], before["limits"])
    assert caps_of(pod_env, pod, "web") == caps  # the pod's --cap-drop, now the container's
    assert fetch(port) == "by hand"
    assert list(ps(pod_env, pod)) == ["web", "env"]
    # -e and -u, read from the running member, carried over; $ kept literal
    assert wait_for(lambda: logs(pod_env, pod, "env")) == "hi $(there)\n33\n100\n"
    down(pod_env, tmp_path, "gen.yaml")


def caps_of(e: PodEnv, pod: str, name: str) -> list[str]:
    status = Path(f"/proc/{ps(e, pod)[name]['pid']}/status").read_text().splitlines()
    return [line for line in status if line.startswith("Cap")]


def nothing_made(e: PodEnv) -> None:
    assert e.run("ls", "-q").stdout == ""
    assert not (e.root / "pods").exists() or not any((e.root / "pods").iterdir())


def test_a_malformed_field_is_named_and_nothing_is_made(pod_env: PodEnv, tmp_path: Path,
                                                        busybox: Path):
    bad = NGINX.replace("HOSTPORT", "eighty")
    r = play(pod_env, bad, tmp_path, busybox)
    assert r.returncode == 2
    assert r.stderr == (f"nspod: {tmp_path}/m.yaml (document 2): spec.containers[0].ports[0]."
                        "hostPort: expected an integer\n")
    nothing_made(pod_env)
    r = play(pod_env, "kind: Pod\nmetadata: {name: x\n", tmp_path, busybox)
    assert r.returncode == 2 and r.stderr.startswith(
        f"nspod: {tmp_path}/m.yaml: malformed YAML: line 3 column 1:")
    nothing_made(pod_env)


def test_a_failing_init_container_stops_the_play_with_its_status(
        pod_env: PodEnv, tmp_path: Path, busybox: Path):
    text = INIT.replace("HOSTPORT", str(free_port())).replace("test -s", "exit 3; test -s")
    r = play(pod_env, text, tmp_path, busybox)
    assert r.returncode == 3
    assert r.stderr.splitlines()[-1] == (
        'nspod: pod "init-demo": init container "check" exited (3)')
    nothing_made(pod_env)


def test_a_failing_pod_rolls_back_the_pods_before_it(pod_env: PodEnv, tmp_path: Path,
                                                     busybox: Path):
    port = free_port()
    first = NGINX.replace("HOSTPORT", str(port))
    second = first.split("---")[1].replace("name: nginx\n  labels", "name: nginx2\n  labels")
    r = play(pod_env, first + "---" + second, tmp_path, busybox)
    assert r.returncode == 125
    assert "nginx2" in r.stderr and str(port) in r.stderr, r.stderr
    nothing_made(pod_env)
    assert not _answers(port)


@pytest.mark.parametrize("medium", ["", "Memory"])
def test_a_sub_path_symlink_cannot_reach_the_host(pod_env: PodEnv, tmp_path: Path,
                                                  busybox: Path, medium: str):
    """The attack of CVE-2017-1002101: a container plants a symlink in a shared
    volume; another mounts it by subPath. It must stay inside the volume."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "host-token").write_text("x")
    text = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: subpath}}
spec:
  initContainers:
  - name: plant
    image: busybox
    command: [ln, -s, "{secret}", /data/evil]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: victim
    image: busybox
    command: [sh, -c, "ls -a /peek; sleep 1000"]
    volumeMounts: [{{name: data, mountPath: /peek, subPath: evil}}]
  volumes:
  - {{name: data, emptyDir: {{medium: "{medium}"}}}}
"""
    r = play(pod_env, text, tmp_path, busybox)
    assert r.returncode == 0, r.stderr
    listing = wait_for(lambda: logs(pod_env, "subpath", "victim"))
    assert "host-token" not in listing
    assert listing.split() == [".", ".."]
    down(pod_env, tmp_path)


def test_down_leaves_pods_it_did_not_make(pod_env: PodEnv, tmp_path: Path):
    pod_env.create("two-containers", "--net", "none")
    (tmp_path / "m.yaml").write_text(TWO)
    r = pod_env.run("kube", "down", str(tmp_path / "m.yaml"))
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == ('nspod: warning: kube down: pod "two-containers": not made by kube '
                        "play, left alone\n")
    assert pod_env.run("ls", "-q").stdout == "two-containers\n"


def test_containers_in_a_directory_and_the_annotation_that_carries_it(
        pod_env: PodEnv, tmp_path: Path, busybox: Path):
    path = tmp_path / "m.yaml"
    path.write_text(TWO)  # image: busybox, mapped to a directory: no store, no pull
    r = pod_env.run("kube", "play", "--rootfs", f"busybox={busybox}", str(path))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert wait_for(lambda: "Hello" in logs(pod_env, "two-containers", "nginx-container"))
    gen = pod_env.run("kube", "generate", "two-containers", check=True).stdout
    assert f"rootfs.nspod.io/nginx-container: {busybox}" in gen
    down(pod_env, tmp_path)
    (tmp_path / "gen.yaml").write_text(gen)
    r = pod_env.run("kube", "play", str(tmp_path / "gen.yaml"))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert wait_for(lambda: "Hello" in logs(pod_env, "two-containers", "nginx-container"))
    down(pod_env, tmp_path, "gen.yaml")


def test_play_pulls_a_missing_image_and_runs_its_entrypoint(
        pod_env: PodEnv, tmp_path: Path, registry: Registry):  # noqa: F811
    text = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: pulled}}
spec:
  containers:
  - name: own
    image: {registry.ref("app")}
  - name: args
    image: {registry.ref("app")}
    args: ["echo $GREETING from args; sleep 1000"]
  - name: command
    image: {registry.ref("app")}
    command: [echo, "$(WHO) from command"]
    env: [{{name: WHO, value: me}}]
"""
    (tmp_path / "m.yaml").write_text(text)
    r = pod_env.run("kube", "play", "--tls-verify=false", str(tmp_path / "m.yaml"), timeout=120)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert wait_for(lambda: "added by layer 2" in logs(pod_env, "pulled", "own"))
    # Entrypoint + Cmd, Env, WorkingDir, User of the image; its layers
    assert logs(pod_env, "pulled", "own").split("\n")[:5] == [
        "hello", "33", "/srv/app", "whiteout-ok", "added by layer 2"]
    assert wait_for(lambda: logs(pod_env, "pulled", "args")) == "hello from args\n"
    assert wait_for(lambda: logs(pod_env, "pulled", "command")) == "me from command\n"
    names = [i["names"] for i in json.loads(pod_env.run("image", "ls", "--json").stdout)]
    assert names == [[registry.ref("app")]]
    down(pod_env, tmp_path)


def test_a_missing_image_with_pull_policy_never(pod_env: PodEnv, tmp_path: Path):
    (tmp_path / "m.yaml").write_text(TWO.replace(
        "    image: busybox\n", "    image: localhost/absent:1\n    imagePullPolicy: Never\n",
        1))
    r = pod_env.run("kube", "play", str(tmp_path / "m.yaml"))
    assert r.returncode == 125
    assert r.stderr == ('nspod: pod "two-containers": image localhost/absent:1: no such image '
                        "(and the pull policy is never)\n")
    nothing_made(pod_env)


SECURITY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: locked
spec:
  replicas: 1
  selector: {matchLabels: {app: locked}}
  template:
    metadata: {labels: {app: locked}}
    spec:
      hostNetwork: true
      containers:
      - name: locked
        image: busybox
        command: [sh, -c, "id -u; id -g; touch /x 2>/dev/null && echo rw || echo ro;
          grep CapEff /proc/self/status; grep Seccomp: /proc/self/status; sleep 1000"]
        securityContext:
          runAsUser: 33
          runAsGroup: 33
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
      - name: tracer
        image: busybox
        command: [sh, -c, "grep CapEff /proc/self/status; grep Seccomp: /proc/self/status;
          sleep 1000"]
        securityContext:
          capabilities: {add: [SYS_PTRACE]}
          seccompProfile: {type: Unconfined}
"""


def test_security_context_and_host_network_of_a_deployment(pod_env: PodEnv, tmp_path: Path,
                                                           busybox: Path):
    r = play(pod_env, SECURITY, tmp_path, busybox)
    assert (r.returncode, r.stdout, r.stderr) == (0, "locked\n", "")
    assert pod_env.inspect("locked")["net"] == "host"
    out = wait_for(lambda: "Seccomp" in logs(pod_env, "locked", "locked") and
                   logs(pod_env, "locked", "locked"))
    lines = out.split("\n")
    assert lines[:3] == ["33", "33", "ro"]
    assert int(lines[3].split()[1], 16) == 0  # no capability left
    assert lines[4].split() == ["Seccomp:", "2"]  # RuntimeDefault: nspod's default filter
    tracer = wait_for(lambda: "Seccomp" in logs(pod_env, "locked", "tracer") and
                      logs(pod_env, "locked", "tracer")).split("\n")
    assert int(tracer[0].split()[1], 16) & (1 << 19)  # CAP_SYS_PTRACE added
    assert tracer[1].split() == ["Seccomp:", "0"]  # seccompProfile: Unconfined
    down(pod_env, tmp_path)


def test_generate_names_the_image_a_member_ran(pod_env: PodEnv, tmp_path: Path, busybox: Path):
    import yaml

    pod_env.create("fromimage", "--net", "none")
    pod_env.run("join", "-d", "--name", "sleeper", "--image", IMAGE, "fromimage", "--",
                "sleep", "1000", check=True)
    gen = pod_env.run("kube", "generate", "fromimage", check=True).stdout
    (doc,) = yaml.safe_load_all(gen)
    (c,) = doc["spec"]["containers"]
    assert (c["name"], c["image"], c["imagePullPolicy"], c["command"]) == (
        "sleeper", IMAGE, "IfNotPresent", ["sleep", "1000"])
    assert "annotations" not in doc["metadata"]
    pod_env.run("rm", "-f", "-t", "0", "fromimage", check=True)
    (tmp_path / "gen.yaml").write_text(gen)
    r = pod_env.run("kube", "play", str(tmp_path / "gen.yaml"))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert ps(pod_env, "fromimage")["sleeper"]["state"] == "running"
    down(pod_env, tmp_path, "gen.yaml")


def test_a_killed_play_is_taken_away_by_down(pod_env: PodEnv, tmp_path: Path, busybox: Path):
    import signal

    text = INIT.replace("HOSTPORT", str(free_port())).replace("test -s", "sleep 60; test -s")
    path = tmp_path / "m.yaml"
    path.write_text(text.replace("image: busybox", f"image: {IMAGE}"))
    proc = pod_env.popen("kube", "play", str(path), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        # killed while it waits for the second init container
        assert wait_for(lambda: (pod_env.root / "pods/init-demo/members/check.json").exists())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert pod_env.run("ls", "-q").stdout == "init-demo\n"
    down(pod_env, tmp_path)


def test_playing_twice_leaves_the_first_pod_alone(pod_env: PodEnv, tmp_path: Path,
                                                 busybox: Path):
    port = free_port()
    text = NGINX.replace("HOSTPORT", str(port))
    assert play(pod_env, text, tmp_path, busybox).returncode == 0
    r = play(pod_env, text, tmp_path, busybox)
    assert r.returncode == 125
    assert r.stderr == 'nspod: pod "nginx" already exists\n'
    assert fetch(port) == "hello from a configMap"
    down(pod_env, tmp_path)


def test_play_reads_stdin(pod_env: PodEnv, tmp_path: Path, busybox: Path):
    text = TWO.replace("image: busybox", f"image: {IMAGE}")
    r = pod_env.run("kube", "play", "-", input=text)
    assert (r.returncode, r.stdout, r.stderr) == (0, "two-containers\n", "")
    (tmp_path / "m.yaml").write_text(text)
    r = pod_env.run("kube", "play", "-", input="kind: Pod\nspec: [\n")
    assert r.returncode == 2 and r.stderr.startswith("nspod: stdin: malformed YAML: line 3")
    down(pod_env, tmp_path)


def test_host_path_volumes(pod_env: PodEnv, tmp_path: Path, busybox: Path):
    shared = tmp_path / "made-by-play"
    text = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: hostpath}}
spec:
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, "echo from the pod > /out/file; sleep 1000"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  volumes:
  - name: out
    hostPath: {{path: "{shared}", type: DirectoryOrCreate}}
"""
    assert play(pod_env, text, tmp_path, busybox).returncode == 0
    assert wait_for(lambda: (shared / "file").exists())
    assert (shared / "file").read_text() == "from the pod\n"
    down(pod_env, tmp_path)
    missing = text.replace("DirectoryOrCreate", "Directory").replace(str(shared),
                                                                     str(tmp_path / "absent"))
    r = play(pod_env, missing, tmp_path, busybox)
    assert (r.returncode, r.stderr) == (125, f'nspod: pod "hostpath": volume "out": hostPath '
                                              f"{tmp_path}/absent: no such file or directory\n")
    nothing_made(pod_env)
