"""Issue 15: images pulled from a real registry (Debian's docker-registry on 127.0.0.1),
loaded, imported, and run as members on an overlay root of their own."""

import io
import json
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import NSPOD, ROOTFS, PodEnv, is_root

pytestmark = pytest.mark.root

ESCAPE = f"nspod-escape-{uuid.uuid4().hex[:8]}"  # what a hostile layer tries to write on the host
APP_SCRIPT = ("echo $GREETING; id -u; pwd; test -e /etc/os-release || echo whiteout-ok; "
              "cat /etc/added")


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    layout: Path  # the OCI layout the images were built in (tags base, app, evil)

    def ref(self, tag: str) -> str:
        return f"{self.host}/test/bb:{tag}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd, timeout=60)


def _build(d: Path) -> Path:
    """An OCI layout: `base` (the busybox rootfs), `app` (base + a layer that deletes
    /etc/os-release and adds /etc/added, with a config), `evil` (a symlink out)."""
    layout = d / "layout"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", f"{layout}:base")
    _run("umoci", "insert", "--image", f"{layout}:base", str(ROOTFS), "/")
    _run("umoci", "insert", "--image", f"{layout}:base", "--tag", "app", "--whiteout",
         "/etc/os-release")
    (d / "added").write_text("added by layer 2\n")
    _run("umoci", "insert", "--image", f"{layout}:app", str(d / "added"), "/etc/added")
    _run("umoci", "config", "--image", f"{layout}:app", "--config.entrypoint", "/bin/sh",
         "--config.entrypoint", "-c", "--config.cmd", APP_SCRIPT, "--config.env",
         "GREETING=hello", "--config.env", "PATH=/bin:/sbin", "--config.workingdir",
         "/srv/app", "--config.user", "www")
    (d / "evil").mkdir()
    (d / "evil" / "resolv.conf").symlink_to("../../../../../../../tmp/nspod-evil/secret")
    _run("umoci", "insert", "--image", f"{layout}:base", "--tag", "evil",
         str(d / "evil" / "resolv.conf"), "/etc/resolv.conf")
    # a layer of entries aimed out of the root: ../, an absolute path, and a file
    # under a symlink to the host's /tmp that an earlier entry of the layer made
    with tarfile.open(d / "tarbomb.tar", "w") as t:
        for name in (f"../../../../../tmp/{ESCAPE}-dotdot", f"/tmp/{ESCAPE}-abs"):
            ti = tarfile.TarInfo(name)
            ti.size = 4
            t.addfile(ti, io.BytesIO(b"out\n"))
        link = tarfile.TarInfo("out")
        link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
        t.addfile(link)
        ti = tarfile.TarInfo(f"out/{ESCAPE}-symlink")
        ti.size = 4
        t.addfile(ti, io.BytesIO(b"out\n"))
        dev = tarfile.TarInfo("hostdev")  # a device node: 1:5 is /dev/zero
        dev.type, dev.devmajor, dev.devminor, dev.mode = tarfile.CHRTYPE, 1, 5, 0o666
        t.addfile(dev)
    _run("umoci", "insert", "--image", f"{layout}:base", "--tag", "tarbomb", "--no-history",
         str(d / "added"), "/etc/added")
    _run("umoci", "raw", "add-layer", "--image", f"{layout}:tarbomb", str(d / "tarbomb.tar"))
    return layout


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if not is_root():
        pytest.skip("needs root and the real kernel")
    for tool in ("docker-registry", "skopeo", "umoci"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run make setup")
    d = tmp_path_factory.mktemp("registry")
    port = _free_port()
    (d / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {d / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(d / "registry.log", "w")
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")],
                            stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail(f"docker-registry did not answer: {(d / 'registry.log').read_text()}")
        reg = Registry(f"127.0.0.1:{port}", _build(d))
        for tag in ("base", "app", "evil", "tarbomb"):
            _run("skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                 f"oci:{reg.layout}:{tag}", f"docker://{reg.ref(tag)}")
        yield reg
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def pull(e: PodEnv, ref: str) -> subprocess.CompletedProcess[str]:
    return e.run("image", "pull", "--tls-verify=false", ref, timeout=60)


def image_ls(e: PodEnv) -> list[dict[str, object]]:
    return json.loads(e.run("image", "ls", "--json", check=True).stdout)  # type: ignore[no-any-return]


def tmp_left(e: PodEnv) -> list[str]:
    tmp = e.root / "storage" / "images" / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def test_pull_from_a_registry_and_run_the_images_own_command(pod_env: PodEnv,
                                                             registry: Registry) -> None:
    r = pull(pod_env, registry.ref("app"))
    assert r.returncode == 0, r.stderr
    table = pod_env.run("image", "ls", check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "TAG", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:2] == [f"{registry.host}/test/bb", "app"]
    info = json.loads(pod_env.run("image", "inspect", "test/bb:app", check=True).stdout)[0]
    assert info["names"] == [registry.ref("app")] and info["digest"].startswith("sha256:")
    assert len(info["layers"]) == 3  # the rootfs, the whiteout, the added file
    assert info["config"]["config"]["Env"] == ["GREETING=hello", "PATH=/bin:/sbin"]
    pod_env.create("p", "--net", "none")
    # no command: Entrypoint + Cmd, as user www, in WorkingDir (made), with Env;
    # the second layer's whiteout deleted /etc/os-release and added /etc/added
    r = pod_env.run("join", "--image", registry.ref("app"), "p")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["hello", "33", "/srv/app", "whiteout-ok", "added by layer 2"]
    # -e, -w, -u win over the image's Env, WorkingDir, User; a short name finds it
    r = pod_env.run("join", "--image", "test/bb:app", "-e", "GREETING=bye", "-w", "/", "-u",
                    "0", "p")
    assert r.stdout.splitlines()[:3] == ["bye", "0", "/"], r.stderr
    # a command replaces Entrypoint and Cmd; the pod's /proc, /etc files, /dev
    r = pod_env.run("join", "--image", "test/bb:app", "p", "--", "sh", "-c",
                    "tr -d \"\\\\000\" < /proc/1/cmdline; echo; cat /etc/hostname; ls /dev/null")
    assert r.stdout.split() == ["/pause", "p", "/dev/null"], r.stderr


def test_a_pull_of_a_stored_image_downloads_no_layer(pod_env: PodEnv, registry: Registry,
                                                      tmp_path: Path) -> None:
    tag = f"once-{uuid.uuid4().hex[:8]}"
    (tmp_path / "once").write_text(f"{tag}\n")  # a layer no other image has
    _run("umoci", "insert", "--image", f"{registry.layout}:base", "--tag", tag,
         str(tmp_path / "once"), "/etc/once")
    _run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{registry.layout}:{tag}",
         f"docker://{registry.ref(tag)}")
    assert pull(pod_env, registry.ref(tag)).returncode == 0
    stored = image_ls(pod_env)
    # the registry loses that layer: a pull that downloaded it would fail
    index = json.loads((registry.layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((registry.layout / "blobs" / "sha256" /
                           desc["digest"].split(":")[1]).read_text())
    hexd = manifest["layers"][-1]["digest"].split(":")[1]
    blobs = registry.layout.parent / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    (blobs / hexd[:2] / hexd / "data").unlink()
    r = pull(pod_env, registry.ref(tag))
    assert (r.returncode, r.stderr) == (0, "")
    assert image_ls(pod_env) == stored
    # the proof that the layer is gone: without the stored image, the pull fails
    pod_env.run("image", "rm", registry.ref(tag), check=True)
    r = pull(pod_env, registry.ref(tag))
    assert r.returncode == 125 and r.stderr.startswith(f"nspod: pull {registry.ref(tag)}: ")
    assert image_ls(pod_env) == [] and tmp_left(pod_env) == []


def test_members_of_one_image_never_see_each_others_writes(pod_env: PodEnv,
                                                          registry: Registry) -> None:
    assert pull(pod_env, registry.ref("base")).returncode == 0
    pod_env.create("p", "--net", "none", "--image", registry.ref("base"))
    r = pod_env.run("join", "--name", "a", "p", "--", "sh", "-c",
                    "echo mine > /etc/mine; rm /bin/ls; echo changed > /etc/passwd; "
                    "cat /etc/mine")
    assert r.returncode == 0 and r.stdout == "mine\n", r.stderr
    r = pod_env.run("join", "--name", "b", "p", "--", "sh", "-c",
                    "test -e /etc/mine && echo SEEN; test -e /bin/ls && echo ls-there; "
                    "head -1 /etc/passwd")
    assert r.stdout.splitlines() == ["ls-there", "root:x:0:0:root:/root:/bin/sh"], r.stderr
    # the unpacked image itself is untouched
    info = json.loads(pod_env.run("image", "inspect", registry.ref("base"), check=True).stdout)[0]
    root = Path(info["root"])
    assert (root / "bin" / "ls").exists() and not (root / "etc" / "mine").exists()
    assert info["used_by"] == [str(pod_env.root / "pods" / "p")]
    # a new member of the same name starts from the image again
    r = pod_env.run("join", "--name", "a", "p", "--", "sh", "-c", "test -e /etc/mine || echo fresh")
    assert r.stdout == "fresh\n", r.stderr


def test_read_only_image_root(pod_env: PodEnv, registry: Registry) -> None:
    assert pull(pod_env, registry.ref("base")).returncode == 0
    pod_env.create("p", "--net", "none")
    r = pod_env.run("join", "--read-only", "--image", registry.ref("base"), "p", "--", "sh",
                    "-c", "touch /x; touch /tmp/y && echo tmp-ok")
    assert "Read-only file system" in r.stderr and r.stdout == "tmp-ok\n"


def test_image_rm_refused_while_a_pod_uses_it(pod_env: PodEnv, registry: Registry) -> None:
    ref = registry.ref("base")
    assert pull(pod_env, ref).returncode == 0
    pod_env.create("p", "--net", "none", "--image", ref)
    r = pod_env.run("image", "rm", ref)
    assert r.returncode == 125
    assert r.stderr.startswith("nspod: image rm ") and "in use by pod p" in r.stderr
    assert len(image_ls(pod_env)) == 1
    pod_env.run("rm", "-f", "p", check=True)
    r = pod_env.run("image", "rm", ref)
    assert r.returncode == 0, r.stderr
    assert image_ls(pod_env) == []
    assert not any((pod_env.root / "storage" / "images").glob("[0-9a-f]" * 8 + "*"))


def test_image_rm_force_and_a_pod_whose_image_went(pod_env: PodEnv, registry: Registry) -> None:
    ref = registry.ref("base")
    assert pull(pod_env, ref).returncode == 0
    pod_env.create("p", "--net", "none", "--image", ref)
    assert pod_env.run("image", "rm", "-f", ref).returncode == 0
    r = pod_env.run("join", "p", "--", "true")
    assert r.returncode == 125 and "no such image" in r.stderr


def _archive_roundtrip(e: PodEnv, registry: Registry, transport: str, name: str,
                       tmp: Path, gzip: bool = False) -> None:
    archive = tmp / f"saved-{transport}.tar"
    _run("skopeo", "copy", "--quiet", f"oci:{registry.layout}:app",
         f"{transport}:{archive}:{name}")
    if gzip:  # docker save | gzip > FILE
        _run("gzip", str(archive))
        archive = archive.with_suffix(".tar.gz")
    r = e.run("image", "load", str(archive))
    assert r.returncode == 0, r.stderr
    assert [i["names"] for i in image_ls(e)] == [[name]]
    e.create("p", "--net", "none")
    r = e.run("join", "--image", name, "p")
    assert r.stdout.splitlines()[-2:] == ["whiteout-ok", "added by layer 2"], r.stderr


def test_load_a_docker_archive(pod_env: PodEnv, registry: Registry, tmp_path: Path) -> None:
    _archive_roundtrip(pod_env, registry, "docker-archive", "localhost/test/saved:v1", tmp_path)


def test_load_a_gzipped_docker_archive(pod_env: PodEnv, registry: Registry,
                                       tmp_path: Path) -> None:
    _archive_roundtrip(pod_env, registry, "docker-archive", "localhost/test/saved:gz", tmp_path,
                       gzip=True)


def test_load_an_oci_archive(pod_env: PodEnv, registry: Registry, tmp_path: Path) -> None:
    _archive_roundtrip(pod_env, registry, "oci-archive", "localhost/test/saved:v2", tmp_path)


def test_load_refuses_what_is_not_an_archive(pod_env: PodEnv, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_text("not a tarball")
    r = pod_env.run("image", "load", str(junk))
    assert r.returncode == 125 and r.stderr.startswith("nspod: image load ")
    assert len(r.stderr.splitlines()) == 1 and image_ls(pod_env) == []


def test_import_a_rootfs_tarball(pod_env: PodEnv, tmp_path: Path) -> None:
    tarball = tmp_path / "rootfs.tar.gz"
    _run("tar", "-C", str(ROOTFS), "-czf", str(tarball), ".")
    r = pod_env.run("image", "import", str(tarball), "mybox:1")
    assert r.returncode == 0, r.stderr
    assert [i["names"] for i in image_ls(pod_env)] == [["localhost/mybox:1"]]
    pod_env.create("p", "--net", "none")
    r = pod_env.run("join", "--image", "mybox:1", "p", "--", "cat", "/etc/os-release")
    assert r.stdout == "nspod-busybox\n", r.stderr


def test_a_working_directory_is_never_made_on_the_host(pod_env: PodEnv,
                                                       tmp_path: Path) -> None:
    """An image's WorkingDir (or -w) is made when missing: through the image's
    symlink /proc/self/fd/N/../.., N a directory nspod still had open, a plain
    mkdir -p made it on the host, as root, wherever the image said."""
    host = Path(f"/tmp/nspod-workdir-{uuid.uuid4().hex[:8]}")
    host.mkdir()
    root = tmp_path / "root"
    shutil.copytree(ROOTFS, root, symlinks=True)
    climb = "/".join([".."] * 16) + str(host)
    for n in range(3, 24):
        (root / f"w{n}").symlink_to(f"/proc/self/fd/{n}/{climb}")
    tarball = tmp_path / "rootfs.tar"
    _run("tar", "-C", str(root), "-cf", str(tarball), ".")
    try:
        assert pod_env.run("image", "import", str(tarball), "wd:1").returncode == 0
        pod_env.create("p", "--net", "none")
        for n in range(3, 24):
            r = pod_env.run("join", "--image", "wd:1", "-w", f"/w{n}/made{n}", "p", "--", "true")
            assert r.returncode == 125, (n, r)
        assert list(host.iterdir()) == []
        # a working directory inside the image is still made
        r = pod_env.run("join", "--image", "wd:1", "-w", "/new/dir", "p", "--", "pwd")
        assert r.stdout == "/new/dir\n", r.stderr
    finally:
        shutil.rmtree(host, ignore_errors=True)


@pytest.mark.parametrize("step", ["image-copied", "image-unpacked"])
def test_a_killed_pull_leaves_no_image(pod_env: PodEnv, registry: Registry, step: str) -> None:
    env = dict(pod_env.env, NSPOD_KILL_AT=step)
    r = subprocess.run([str(NSPOD), "image", "pull", "--tls-verify=false", registry.ref("app")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert image_ls(pod_env) == [] and tmp_left(pod_env)
    pod_env.create("p", "--net", "none")
    r = pod_env.run("join", "--pull", "never", "--image", registry.ref("app"), "p")
    assert r.returncode == 125 and "no such image" in r.stderr
    # the next pull takes what the dead one left, and works
    assert pull(pod_env, registry.ref("app")).returncode == 0
    assert len(image_ls(pod_env)) == 1 and tmp_left(pod_env) == []


def test_pull_killed_while_skopeo_waits_takes_skopeo_along(pod_env: PodEnv) -> None:
    # a "registry" that accepts connections and never answers: skopeo waits
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        ref = f"127.0.0.1:{silent.getsockname()[1]}/test/never:1"
        p = pod_env.popen("image", "pull", "--tls-verify=false", ref,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        skopeo = []
        for _ in range(200):
            children = Path(f"/proc/{p.pid}/task/{p.pid}/children")
            skopeo = children.read_text().split() if children.exists() else []
            if skopeo:
                break
            time.sleep(0.02)
        assert skopeo, "skopeo never started"
        p.kill()
        p.wait()
        for _ in range(100):
            if not Path(f"/proc/{skopeo[0]}").exists():
                break
            time.sleep(0.05)
        assert not Path(f"/proc/{skopeo[0]}").exists(), "skopeo outlived nspod"
    assert image_ls(pod_env) == []
    assert pod_env.run("image", "prune").returncode == 0
    assert tmp_left(pod_env) == []


def test_parallel_pulls_of_one_image(pod_env: PodEnv, registry: Registry) -> None:
    procs = [pod_env.popen("image", "pull", "-q", "--tls-verify=false", registry.ref("app"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert len({o[0] for o in outs}) == 1
    assert len(image_ls(pod_env)) == 1 and tmp_left(pod_env) == []


def test_a_failed_pull_says_why_in_one_line(pod_env: PodEnv, registry: Registry) -> None:
    r = pull(pod_env, registry.ref("nosuchtag"))
    assert r.returncode == 125
    assert r.stderr.startswith(f"nspod: pull {registry.ref('nosuchtag')}: ")
    assert len(r.stderr.splitlines()) == 1
    assert image_ls(pod_env) == [] and tmp_left(pod_env) == []


def test_a_symlink_in_the_image_never_reaches_the_host(pod_env: PodEnv,
                                                       registry: Registry) -> None:
    # the image's /etc/resolv.conf points out of its root, at a host file
    marker = Path("/tmp/nspod-evil")
    marker.mkdir(exist_ok=True)
    secret = marker / "secret"
    token = uuid.uuid4().hex
    secret.write_text(token + "\n")
    try:
        assert pull(pod_env, registry.ref("evil")).returncode == 0
        pod_env.create("p", "--net", "none")
        r = pod_env.run("join", "--image", registry.ref("evil"), "p", "--", "sh", "-c",
                        "cat /etc/resolv.conf; echo pwned > /etc/resolv.conf")
        assert token not in r.stdout
        assert secret.read_text() == token + "\n"
    finally:
        shutil.rmtree(marker, ignore_errors=True)


def test_a_layer_aimed_out_of_the_root_stays_in_it(pod_env: PodEnv, registry: Registry) -> None:
    r = pull(pod_env, registry.ref("tarbomb"))
    assert r.returncode == 0, r.stderr
    assert list(Path("/tmp").glob(f"{ESCAPE}*")) == []
    assert not list((pod_env.root / "storage" / "images").glob(f"tmp/{ESCAPE}*"))
    pod_env.create("p", "--net", "none")
    r = pod_env.run("join", "--image", registry.ref("tarbomb"), "p", "--", "ls", "/tmp")
    assert sorted(r.stdout.split()) == sorted(f"{ESCAPE}-{k}" for k in ("abs", "dotdot",
                                                                       "symlink")), r.stderr
    # the image's device node is there, and cannot be opened (nodev)
    r = pod_env.run("join", "--image", registry.ref("tarbomb"), "p", "--", "sh", "-c",
                    "ls -l /hostdev; head -c 4 /hostdev | wc -c")
    assert r.stdout.startswith("c") and "Permission denied" in r.stderr, r.stdout + r.stderr
