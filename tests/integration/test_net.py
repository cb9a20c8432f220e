"""Pod networking on the real kernel: addresses, links, routes, published ports, /etc files.

Traffic stays on this machine: loopback, the test's bridge, and addresses of
namespaces the test made. Published ports are free high ports.
"""

import ipaddress
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NSPOD, REPO, PodEnv, nft_elements

pytestmark = pytest.mark.root

FETCH = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())\n"
)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port no socket uses now (the kernel's choice, always above 10000 here)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    assert port > 10000
    return port


def fetch(url: str, timeout: float = 3) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - local only
        return r.read().decode().strip()


def fetch_in(env: PodEnv, pod: str, url: str) -> str:
    return env.run("join", pod, "--", "python3", "-c", FETCH, url, check=True).stdout.strip()


class Server:
    """`python3 -m http.server` joined to a pod, serving a page that names it."""

    def __init__(self, env: PodEnv, pod: str, port: int, tmp: Path, bind: str = "0.0.0.0"):
        self.dir = tmp / f"www-{pod}-{port}"
        self.dir.mkdir()
        (self.dir / "index.html").write_text(f"hello from {pod}\n")
        self.proc = env.popen("join", pod, "--", "python3", "-m", "http.server", "--bind", bind,
                              "-d", str(self.dir), str(port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.env, self.pod, self.port, self.bind = env, pod, port, bind

    def wait_ready(self) -> None:
        host = "127.0.0.1" if self.bind == "0.0.0.0" else self.bind
        probe = f"import socket; socket.create_connection(('{host}', {self.port}), 1)"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.env.run("join", self.pod, "--", "python3", "-c", probe).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"server in {self.pod} on port {self.port} never answered")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        if s.proc.poll() is None:
            s.stop()


def serve(env: PodEnv, pod: str, port: int, tmp: Path, made: list[Server]) -> Server:
    s = Server(env, pod, port, tmp)
    made.append(s)
    s.wait_ready()
    return s


def host_links(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True,
                         text=True).stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


def records(env: PodEnv, kind: str) -> list[str]:
    d = env.root / kind
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def assert_nothing_of(env: PodEnv, pod: str) -> None:
    assert pod not in env.run("ls", "-q").stdout.split()
    assert not (env.root / "pods" / pod).exists()
    for kind in ("ipam", "ports"):
        for p in records(env, kind):
            assert (env.root / kind / p).read_text().split()[0] != pod, f"{kind}/{p} left"
    for elem in nft_elements(env.table):
        assert f"pod {pod}" not in elem


# -- addresses, links, routes ----------------------------------------------------


def test_pod_gets_an_address_eth0_lo_and_default_route(pod_env: PodEnv) -> None:
    name = pod_env.create("web")
    info = pod_env.inspect(name)
    net = ipaddress.ip_network(pod_env.subnet)
    ip = ipaddress.ip_address(info["ip"])
    assert ip in net and ip not in (net.network_address, net.network_address + 1)
    assert info["gateway"] == str(net.network_address + 1)
    addrs = json.loads(pod_env.run("join", name, "--", "ip", "-j", "addr", check=True).stdout)
    by_name = {a["ifname"]: a for a in addrs}
    assert set(by_name) == {"lo", "eth0"}
    assert "UP" in by_name["lo"]["flags"] and "UP" in by_name["eth0"]["flags"]
    eth0 = [(a["local"], a["prefixlen"]) for a in by_name["eth0"]["addr_info"]
            if a["family"] == "inet"]
    assert eth0 == [(info["ip"], net.prefixlen)]
    assert by_name["eth0"]["address"] == info["mac"]
    routes = json.loads(pod_env.run("join", name, "--", "ip", "-j", "route", check=True).stdout)
    default = {"dst": "default", "gateway": info["gateway"], "dev": "eth0"}
    assert default.items() <= routes[0].items()
    # the host end is on the test's bridge, which holds the gateway address
    assert host_links(pod_env.bridge) == [info["veth"]]
    assert len(info["veth"]) <= 15
    bridge = json.loads(subprocess.run(["ip", "-j", "addr", "show", pod_env.bridge],
                                       capture_output=True, text=True, check=True).stdout)
    assert info["gateway"] in [a["local"] for a in bridge[0]["addr_info"]]
    ls = pod_env.run("ls", check=True).stdout
    assert info["ip"] in ls.splitlines()[1].split()


def test_host_to_pod_and_pod_to_pod(pod_env: PodEnv, tmp_path: Path,
                                    servers: list[Server]) -> None:
    a = pod_env.create("a")
    b = pod_env.create("b")
    ip_a, ip_b = pod_env.inspect(a)["ip"], pod_env.inspect(b)["ip"]
    port = free_port()
    serve(pod_env, a, port, tmp_path, servers)
    serve(pod_env, b, port, tmp_path, servers)
    assert fetch(f"http://{ip_a}:{port}/") == "hello from a"
    assert fetch(f"http://{ip_b}:{port}/") == "hello from b"
    assert fetch_in(pod_env, b, f"http://{ip_a}:{port}/") == "hello from a"
    assert fetch_in(pod_env, a, f"http://{ip_b}:{port}/") == "hello from b"


def test_twelve_parallel_creates_get_distinct_addresses(pod_env: PodEnv) -> None:
    procs = [pod_env.popen("create", f"p{i}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(12)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        pod_env.pods_seen.add(out.strip())
    ips = [pod_env.inspect(f"p{i}")["ip"] for i in range(12)]
    assert len(set(ips)) == 12
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(pod_env.subnet) for ip in ips)
    assert sorted(records(pod_env, "ipam")) == sorted(ips)
    assert len(host_links(pod_env.bridge)) == 12


def test_requested_address(pod_env: PodEnv) -> None:
    net = ipaddress.ip_network(pod_env.subnet)
    want = str(net.network_address + 50)
    name = pod_env.create("fixed", "--ip", want)
    assert pod_env.inspect(name)["ip"] == want
    taken = pod_env.run("create", "other", "--ip", want)
    assert taken.returncode == 125
    assert taken.stderr == f"nspod: address {want}: already used by pod 'fixed'\n"
    outside = pod_env.run("create", "other", "--ip", "192.0.2.9")
    assert outside.returncode == 125 and "outside the pod addresses" in outside.stderr
    gateway = pod_env.run("create", "other", "--ip", str(net.network_address + 1))
    assert gateway.returncode == 125
    bad = pod_env.run("create", "other", "--ip", "10.1")
    assert bad.returncode == 2 and "not an IPv4 address" in bad.stderr
    assert_nothing_of(pod_env, "other")
    assert records(pod_env, "ipam") == [want]
    assert len(host_links(pod_env.bridge)) == 1


# -- published ports ---------------------------------------------------------------


def test_published_port_answers_on_localhost_host_address_and_from_pods(
    pod_env: PodEnv, tmp_path: Path, servers: list[Server]
) -> None:
    port = free_port()
    web = pod_env.create("web", "-p", f"{port}:80")
    other = pod_env.create("other")
    info = pod_env.inspect(web)
    assert info["ports"] == [{"host_ip": "", "host_port": port, "pod_port": 80, "proto": "tcp"}]
    serve(pod_env, web, 80, tmp_path, servers)
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from web"
    assert fetch(f"http://{info['gateway']}:{port}/") == "hello from web"
    # from another pod, and from the pod itself (hairpin), through the host's address
    assert fetch_in(pod_env, other, f"http://{info['gateway']}:{port}/") == "hello from web"
    assert fetch_in(pod_env, web, f"http://{info['gateway']}:{port}/") == "hello from web"


def test_published_port_on_one_host_address_only(pod_env: PodEnv, tmp_path: Path,
                                                 servers: list[Server]) -> None:
    port = free_port()
    web = pod_env.create("web", "-p", f"127.0.0.1:{port}:80")
    gateway = pod_env.inspect(web)["gateway"]
    serve(pod_env, web, 80, tmp_path, servers)
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from web"
    with pytest.raises(OSError):
        fetch(f"http://{gateway}:{port}/", timeout=1)


def test_published_udp_port(pod_env: PodEnv) -> None:
    port = free_port(socket.SOCK_DGRAM)
    name = pod_env.create("dns", "-p", f"{port}:5353/udp")
    echo = pod_env.popen("join", name, "--", "python3", "-c",
                         "import socket\n"
                         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                         "s.bind(('0.0.0.0', 5353))\n"
                         "data, peer = s.recvfrom(100)\n"
                         "s.sendto(b'echo ' + data, peer)\n")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            deadline = time.monotonic() + 10
            while True:
                s.sendto(b"ping", ("127.0.0.1", port))
                try:
                    assert s.recv(100) == b"echo ping"
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "no UDP answer"
    finally:
        echo.kill()
        echo.wait(10)


def test_port_published_by_another_pod_is_refused(pod_env: PodEnv) -> None:
    port = free_port()
    pod_env.create("first", "-p", f"{port}:80")
    before = host_links(pod_env.bridge)
    r = pod_env.run("create", "second", "-p", f"{free_port()}:81", "-p", f"{port}:80/tcp")
    assert r.returncode == 125
    assert r.stderr == (f"nspod: publish {port}:80/tcp: host port {port}/tcp is already "
                        f"published by pod 'first'\n")
    assert_nothing_of(pod_env, "second")
    assert host_links(pod_env.bridge) == before
    assert len(records(pod_env, "ports")) == 1 and len(nft_elements(pod_env.table)) == 1
    # the same number over UDP is another port
    pod_env.create("third", "-p", f"{port}:53/udp")


def test_port_held_by_a_host_socket_is_refused(pod_env: PodEnv) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        r = pod_env.run("create", "web", "-p", f"{port}:80")
    assert r.returncode == 125
    assert r.stderr == (f"nspod: publish {port}:80/tcp: host port {port}/tcp: in use by a "
                        "process on the host\n")
    assert_nothing_of(pod_env, "web")
    assert records(pod_env, "ipam") == [] and records(pod_env, "ports") == []
    assert host_links(pod_env.bridge) == []


@pytest.mark.parametrize(
    ("arg", "why"),
    [
        ("80", "'80' is not [HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp]"),
        ("0:80", "'0:80': port 0 is outside 1-65535"),
        ("70000:80", "'70000:80': port 70000 is outside 1-65535"),
        ("8080:80/icmp", "'8080:80/icmp': protocol 'icmp' is not tcp or udp"),
    ],
)
def test_malformed_publish_is_a_usage_error(pod_env: PodEnv, arg: str, why: str) -> None:
    r = pod_env.run("create", "web", "-p", arg)
    assert r.returncode == 2
    assert r.stderr == f"nspod: create: invalid value for -p: {why}\n"
    assert_nothing_of(pod_env, "web")


def test_publish_needs_bridge_network(pod_env: PodEnv) -> None:
    r = pod_env.run("create", "web", "--net", "host", "-p", f"{free_port()}:80")
    assert r.returncode == 2
    assert r.stderr == "nspod: create: -p needs --net bridge (not --net host)\n"


def test_localnet_is_scoped_to_the_bridge(pod_env: PodEnv) -> None:
    all_before = Path("/proc/sys/net/ipv4/conf/all/route_localnet").read_text()
    pod_env.create("web", "-p", f"{free_port()}:80")
    conf = Path("/proc/sys/net/ipv4/conf") / pod_env.bridge
    assert (conf / "route_localnet").read_text() == "1\n"
    assert (conf / "forwarding").read_text() == "1\n"
    assert Path("/proc/sys/net/ipv4/conf/all/route_localnet").read_text() == all_before
    # the one host-wide switch nspod turns on, while a network needs it (test_networks)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == "1\n"
    table = subprocess.run(["nft", "list", "table", "ip", pod_env.table], capture_output=True,
                           text=True, check=True).stdout
    assert 'iifname != "lo" ip daddr 127.0.0.0/8 drop' in table


# -- rm and rollback ------------------------------------------------------------------


def test_rm_frees_veth_address_and_rules(pod_env: PodEnv) -> None:
    port = free_port()
    keep = pod_env.create("keep", "-p", f"{free_port()}:80")
    name = pod_env.create("web", "-p", f"{port}:80", "-p", f"127.0.0.1:{free_port()}:81/udp")
    veth = pod_env.inspect(name)["veth"]
    assert len(nft_elements(pod_env.table)) == 3
    pod_env.run("rm", "-f", name, check=True)
    assert host_links(pod_env.bridge) == [pod_env.inspect(keep)["veth"]]
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    assert records(pod_env, "ipam") == [pod_env.inspect(keep)["ip"]]
    assert len(records(pod_env, "ports")) == 1
    elements = nft_elements(pod_env.table)
    assert len(elements) == 1 and "pod keep" in elements[0]
    # the port is free again for a new pod
    pod_env.create("again", "-p", f"{port}:80")


def test_stopped_pod_keeps_its_address_until_rm(pod_env: PodEnv) -> None:
    name = pod_env.create("web", "-p", f"{free_port()}:80")
    ip = pod_env.inspect(name)["ip"]
    pod_env.run("stop", "-t", "0", name, check=True)
    assert records(pod_env, "ipam") == [ip]
    pod_env.run("rm", name, check=True)
    assert records(pod_env, "ipam") == [] and nft_elements(pod_env.table) == []
    assert host_links(pod_env.bridge) == []


@pytest.mark.parametrize("step", ["dir", "address", "ports", "pause", "namespaces", "veth",
                                  "files", "record"])
def test_failed_create_leaves_nothing(pod_env: PodEnv, step: str) -> None:
    from nspod.pod import CREATE_STEPS

    assert step in CREATE_STEPS
    env = {**pod_env.env, "NSPOD_FAIL_AT": step}
    r = subprocess.run([str(NSPOD), "create", "web", "-p",
                        f"{free_port()}:80"], env=env, capture_output=True, text=True)
    assert r.returncode == 125 and r.stderr == f"nspod: injected failure at {step}\n"
    assert_nothing_of(pod_env, "web")
    assert records(pod_env, "ipam") == [] and records(pod_env, "ports") == []
    assert host_links(pod_env.bridge) == [] and nft_elements(pod_env.table) == []


# -- /etc files, --net none / host ------------------------------------------------------


def test_etc_files_inside_the_pod(pod_env: PodEnv) -> None:
    name = pod_env.create("web", "--hostname", "box", "--dns", "192.0.2.53",
                          "--add-host", "db:10.1.2.3")
    ip = pod_env.inspect(name)["ip"]
    out = pod_env.run("join", name, "--", "sh", "-c",
                      "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; "
                      "cat /etc/hostname; hostname", check=True).stdout
    hosts, resolv, names = out.split("---\n")
    assert f"{ip}\tbox web" in hosts.splitlines()
    assert "127.0.0.1\tlocalhost" in hosts.splitlines()
    assert "10.1.2.3\tdb" in hosts.splitlines()
    assert [ln for ln in resolv.splitlines() if ln.startswith("nameserver")] == [
        "nameserver 192.0.2.53"]
    assert names.split() == ["box", "box"]
    # the host's own files are untouched
    assert "10.1.2.3\tdb" not in Path("/etc/hosts").read_text()


def test_resolv_conf_is_the_hosts_without_loopback_stubs(pod_env: PodEnv) -> None:
    from nspod.etcfiles import EtcSpec, resolv_text

    name = pod_env.create("web")
    inside = pod_env.run("join", name, "--", "cat", "/etc/resolv.conf", check=True).stdout
    assert inside == resolv_text(EtcSpec(name=name, hostname=name, net="bridge"))
    servers = [ln.split()[1] for ln in inside.splitlines() if ln.startswith("nameserver")]
    assert not any(ipaddress.ip_address(s).is_loopback for s in servers)


def test_resolv_conf_replaces_a_stub_resolver(tmp_path: Path) -> None:
    from nspod.etcfiles import EtcSpec, resolv_text

    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\noptions edns0\nsearch example.org\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch example.org\n")
    spec = EtcSpec(name="p", hostname="p", net="bridge")
    assert resolv_text(spec, host, upstream) == upstream.read_text()
    assert resolv_text(spec, host, tmp_path / "none") == "options edns0\nsearch example.org\n"
    host_net = EtcSpec(name="p", hostname="p", net="host")
    assert resolv_text(host_net, host, upstream) == host.read_text()


def test_net_none_has_only_lo(pod_env: PodEnv) -> None:
    name = pod_env.create("iso", "--net", "none")
    links = json.loads(pod_env.run("join", name, "--", "ip", "-j", "link", check=True).stdout)
    assert [link["ifname"] for link in links] == ["lo"]
    assert "ip" not in pod_env.inspect(name)
    assert host_links(pod_env.bridge) == [] and records(pod_env, "ipam") == []


def test_net_host_shares_the_hosts_network(pod_env: PodEnv) -> None:
    name = pod_env.create("hostnet", "--net", "host")
    inside = pod_env.run("join", name, "--", "readlink", "/proc/self/ns/net", check=True).stdout
    assert inside.strip() == os.readlink("/proc/self/ns/net")
    assert pod_env.inspect(name)["net"] == "host"
    assert records(pod_env, "ipam") == []


# -- the seed scenario ---------------------------------------------------------------------


def test_demo_runs_end_to_end(pod_env: PodEnv) -> None:
    """tools/demo: nginx and an app joined to one pod, published on a host port."""
    r = subprocess.run([str(REPO / "tools" / "demo")], env={**pod_env.env,
                       "NSPOD": str(NSPOD)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo: curl answered: hello from the app behind nginx" in r.stdout
    ps = r.stdout.split("demo: ps aux in the pod:\n")[1].split("demo:")[0].splitlines()
    pid1 = [ln for ln in ps[1:] if ln.split()[0] == "1" or ln.split()[1] == "1"]
    assert pid1 and "pause" in pid1[0]
    assert any("nginx: master process" in ln for ln in ps)
    assert any("http.server" in ln or "demo-app" in ln for ln in ps)
    assert pod_env.run("ls", "-q").stdout == ""


def test_start_brings_back_address_and_published_port(pod_env: PodEnv, tmp_path: Path,
                                                       servers: list[Server]) -> None:
    port = free_port()
    pod_env.create("web", "-p", f"{port}:8080")
    ip = pod_env.inspect("web")["ip"]
    pod_env.run("stop", "-t", "0", "web", check=True)
    assert host_links(pod_env.bridge) == []  # the veth went with the pod's netns
    pod_env.run("start", "web", check=True)
    info = pod_env.inspect("web")
    assert info["ip"] == ip and info["state"] == "running"
    serve(pod_env, "web", 8080, tmp_path, servers).wait_ready()
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from web"


def test_an_exited_pod_gives_back_its_address_and_start_claims_it(pod_env: PodEnv) -> None:
    port = free_port()
    pod_env.create("web", "-p", f"{port}:8080")
    info = pod_env.inspect("web")
    os.kill(info["pid"], 9)  # type: ignore[arg-type]
    time.sleep(0.2)
    assert pod_env.inspect("web")["state"] == "exited"  # the light gc ran
    assert records(pod_env, "ipam") == [] and host_links(pod_env.bridge) == []
    assert nft_elements(pod_env.table) == []
    pod_env.run("start", "web", check=True)
    again = pod_env.inspect("web")
    assert again["state"] == "running" and again["ip"] == info["ip"]
    assert len(nft_elements(pod_env.table)) > 0
