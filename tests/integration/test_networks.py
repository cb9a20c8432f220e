"""Networks (issue 13): subnets that never clash with the host, several networks side by
side, outbound NAT, internal networks, names between pods, isolation, rm and gc.

Traffic stays on this machine: the "outside" is a network namespace the test makes,
holding an address that is not on the host, reached through a veth pair the test makes
with a route to it. Pools are the test's own (NSPOD_SUBNET_POOL), never the default
one, so other runs on the machine are not disturbed.
"""

import hashlib
import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FORWARD_HOLDERS, PodEnv, nft_elements
from test_net import Server, fetch, fetch_in, free_port

pytestmark = pytest.mark.root

CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
    "    print(s.recv(100).decode())\n"
    "except OSError as e:\n"
    "    print('failed', e)\n"
    "    sys.exit(1)\n"
)
# connects, and says whether it could
REACH = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()\n"
    "    print('connected')\n"
    "except OSError as e:\n"
    "    print('failed', e)\n"
    "    sys.exit(1)\n"
)
# answers each connection with the address it came from
ECHO_PEER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen()\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    c, a = s.accept(); c.sendall(a[0].encode()); c.close()\n"
    "    print(a[0], flush=True)\n"
)


def sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def pool(env: PodEnv) -> str:
    """A pool of /24s only this test uses: 10.(150+pid%40).X.0/22."""
    block = random.randrange(64) * 4
    return f"10.{150 + os.getpid() % 40}.{block}.0/22:24"


def net_info(env: PodEnv, name: str) -> dict[str, object]:
    return json.loads(env.run("network", "inspect", name, check=True).stdout)[0]  # type: ignore[no-any-return]


def links(tag: str = "") -> set[str]:
    """Links of the host (with tag in their name: those of one test)."""
    return {name for line in sh("ip", "-o", "link").stdout.splitlines()
            if tag in (name := line.split(": ")[1].split("@")[0])}


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        if s.proc.poll() is None:
            s.stop()


@pytest.fixture
def dummies(pod_env: PodEnv) -> Iterator[list[str]]:
    """Interfaces the test adds with an address (bridges, as podman's cni-podman0 is);
    removed after."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def add_dummy(made: list[str], env: PodEnv, addr: str) -> str:
    name = f"ntd{env.tag}{len(made)}"
    sh("ip", "link", "add", name, "type", "bridge")  # no dummy module on every kernel
    made.append(name)
    sh("ip", "addr", "add", addr, "dev", name)
    sh("ip", "link", "set", name, "up")
    return name


# -- subnets: the pool, and clashes with the host -----------------------------------------


def test_default_network_skips_a_subnet_the_host_already_has(
        pod_env: PodEnv, dummies: list[str], tmp_path: Path, servers: list[Server]) -> None:
    pod_env.extra = {"NSPOD_SUBNET": "", "NSPOD_SUBNET_POOL": pool(pod_env)}
    # the block the pool picks on this host now...
    pod_env.run("network", "create", "probe", check=True)
    first = net_info(pod_env, "probe")["subnet"]
    pod_env.run("network", "rm", "probe", check=True)
    # ...is then held by another interface, as podman's cni-podman0 holds 10.88.0.0/16
    gw = first.replace(".0/24", ".1/24")  # type: ignore[attr-defined]
    podman = add_dummy(dummies, pod_env, gw)
    port = free_port()
    web = pod_env.create("web", "-p", f"{port}:80")
    subnet = net_info(pod_env, "nspod")["subnet"]
    assert subnet != first
    assert pod_env.inspect(web)["network"] == "nspod"
    s = Server(pod_env, web, 80, tmp_path)
    servers.append(s)
    s.wait_ready()
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from web"
    # the network keeps its subnet once the other interface is gone
    sh("ip", "link", "del", podman)
    dummies.remove(podman)
    pod_env.create("second")
    assert net_info(pod_env, "nspod")["subnet"] == subnet


def test_explicit_subnet_overlapping_the_host_fails_naming_the_interface(
        pod_env: PodEnv, dummies: list[str]) -> None:
    net = pool(pod_env).split(":")[0].replace(".0/22", ".0/24")
    other = add_dummy(dummies, pod_env, net.replace(".0/24", ".1/24"))
    before = links(pod_env.tag)
    r = pod_env.run("network", "create", "n", "--subnet", net.replace("/24", "/25"))
    assert r.returncode == 125
    assert r.stderr == (f'nspod: network create "n": subnet {net.replace("/24", "/25")} '
                        f'overlaps {net.replace(".0/24", ".1/24")} on {other}\n')
    # nothing was made: no bridge, no record, no table
    assert links(pod_env.tag) == before
    assert pod_env.run("network", "ls", "-q").stdout == ""
    # the default network from NSPOD_SUBNET, the same way, and no pod is left
    pod_env.extra = {"NSPOD_SUBNET": net}
    r = pod_env.run("create", "web")
    assert r.returncode == 125
    assert f"overlaps {net.replace('.0/24', '.1/24')} on {other}" in r.stderr
    assert pod_env.run("ls", "-q").stdout == "" and links(pod_env.tag) == before


# -- several networks ---------------------------------------------------------------------


def test_two_networks_both_publishing_answer_on_localhost(
        pod_env: PodEnv, tmp_path: Path, servers: list[Server]) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    for n in ("a", "b"):
        pod_env.run("network", "create", n, check=True)
    ports = {}
    for n in ("a", "b"):
        ports[n] = free_port()
        pod = pod_env.create(f"web-{n}", "--net", n, "-p", f"{ports[n]}:80")
        s = Server(pod_env, pod, 80, tmp_path)
        servers.append(s)
        s.wait_ready()
    for n in ("a", "b"):
        assert fetch(f"http://127.0.0.1:{ports[n]}/") == f"hello from web-{n}"


def test_a_table_left_by_an_older_nspod_is_rewired(
        pod_env: PodEnv, tmp_path: Path, servers: list[Server]) -> None:
    """Issue 13, 2: the table had the first bridge's masquerade only; a port of a pod on
    another bridge answered "No route to host" from 127.0.0.1."""
    old = f"""table ip {pod_env.table} {{
  map ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  map hostports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "ntbother" ct status dnat ip saddr 127.0.0.0/8 masquerade
  }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=old, text=True, check=True)
    port = free_port()
    web = pod_env.create("web", "-p", f"{port}:80")
    s = Server(pod_env, web, 80, tmp_path)
    servers.append(s)
    s.wait_ready()
    assert fetch(f"http://127.0.0.1:{port}/") == "hello from web"


def test_networks_are_isolated_unless_a_port_is_published(
        pod_env: PodEnv, tmp_path: Path, servers: list[Server]) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    pod_env.run("network", "create", "a", check=True)
    pod_env.run("network", "create", "b", check=True)
    port = free_port()
    x = pod_env.create("x", "--net", "a", "-p", f"{port}:80")
    near = pod_env.create("near", "--net", "a")
    far = pod_env.create("far", "--net", "b")
    s = Server(pod_env, x, 80, tmp_path)
    servers.append(s)
    s.wait_ready()
    ip = pod_env.inspect(x)["ip"]
    assert fetch_in(pod_env, near, f"http://{ip}/") == "hello from x"
    assert pod_env.run("join", near, "--", "python3", "-c", REACH, str(ip), "80").stdout \
        == "connected\n"
    r = pod_env.run("join", far, "--", "python3", "-c", REACH, str(ip), "80")
    assert r.returncode == 1 and r.stdout == "failed timed out\n"
    # the published port is open to every network, through the host
    gateway = pod_env.inspect(far)["gateway"]
    assert fetch_in(pod_env, far, f"http://{gateway}:{port}/") == "hello from x"


# -- outbound NAT -------------------------------------------------------------------------


class Outside:
    """A namespace holding an address not on the host, reached by a veth and a route."""

    def __init__(self, env: PodEnv) -> None:
        self.ns = f"ntx{env.tag}"
        self.veth = f"nto{env.tag}"
        a, b = random.randrange(64, 128), random.randrange(0, 64) * 4
        self.host_ip, self.peer_ip = f"100.{a}.{b}.1", f"100.{a}.{b}.2"
        self.addr = f"203.0.113.{random.randrange(1, 255)}"
        self.server: subprocess.Popen[str] | None = None

    def make(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
           "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        ns = ("ip", "netns", "exec", self.ns)
        sh(*ns, "ip", "addr", "add", f"{self.peer_ip}/30", "dev", "eth0")
        sh(*ns, "ip", "addr", "add", f"{self.addr}/32", "dev", "lo")
        sh(*ns, "ip", "link", "set", "eth0", "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "route", "add", "default", "via", self.host_ip)
        sh("ip", "route", "add", f"{self.addr}/32", "via", self.peer_ip, "dev", self.veth)

    def serve(self, port: int) -> None:
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "python3", "-c", ECHO_PEER, str(port)],
            stdout=subprocess.PIPE, text=True)
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"

    def remove(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def outside(pod_env: PodEnv) -> Iterator[Outside]:
    o = Outside(pod_env)
    try:
        o.make()
        yield o
    finally:
        o.remove()


def test_pods_reach_the_outside_under_the_hosts_address(
        pod_env: PodEnv, outside: Outside) -> None:
    port = free_port()
    outside.serve(port)
    pod = pod_env.create("web")
    r = pod_env.run("join", pod, "--", "python3", "-c", CONNECT, outside.addr, str(port))
    assert r.returncode == 0, r.stdout + r.stderr
    # the server saw the host's address on the link to it, not the pod's
    assert r.stdout.strip() == outside.host_ip
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


def test_an_internal_network_has_no_way_out(pod_env: PodEnv, outside: Outside) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    port = free_port()
    outside.serve(port)
    pod_env.run("network", "create", "closed", "--internal", check=True)
    inside = pod_env.create("inside", "--net", "closed")
    peer = pod_env.create("peer", "--net", "closed")
    r = pod_env.run("join", inside, "--", "python3", "-c", CONNECT, outside.addr, str(port))
    assert r.returncode == 1 and "timed out" in r.stdout
    # inside the network, pods still reach each other
    srv = pod_env.popen("join", peer, "--", "python3", "-c", ECHO_PEER, "8080",
                        stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        r = pod_env.run("join", inside, "--", "python3", "-c", CONNECT, "peer", "8080")
        assert r.returncode == 0 and r.stdout.strip() == pod_env.inspect(inside)["ip"]
    finally:
        srv.kill()
        srv.wait()


# -- names between pods ---------------------------------------------------------------


def hosts_seen_by(env: PodEnv, pod: str, member_pid: int) -> dict[str, str]:
    """name -> address in /etc/hosts as a running member of pod sees it."""
    text = Path(f"/proc/{member_pid}/root/etc/hosts").read_text()
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and not line.startswith("#"):
            for name in parts[1:]:
                out[name] = parts[0]
    return out


def test_pods_on_a_network_reach_each_other_by_name(
        pod_env: PodEnv, tmp_path: Path, servers: list[Server]) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    pod_env.run("network", "create", "app", check=True)
    db = pod_env.create("db", "--net", "app")
    web = pod_env.create("web", "--net", "app")
    stranger = pod_env.create("stranger")  # the default network
    s = Server(pod_env, db, 5432, tmp_path)
    servers.append(s)
    s.wait_ready()
    assert fetch_in(pod_env, web, "http://db:5432/") == "hello from db"
    # a member that keeps running sees the file change under it
    pod_env.run("join", "-d", "--name", "sleeper", web, "--", "sleep", "300", check=True)
    pid = next(m["pid"] for m in json.loads(pod_env.run("ps", web, "--json", check=True).stdout)
               if m["name"] == "sleeper")
    seen = hosts_seen_by(pod_env, web, pid)
    assert seen["db"] == pod_env.inspect(db)["ip"] and "stranger" not in seen
    cache = pod_env.create("cache", "--net", "app")
    assert hosts_seen_by(pod_env, web, pid)["cache"] == pod_env.inspect(cache)["ip"]
    pod_env.run("stop", "-t", "0", cache, check=True)
    assert "cache" not in hosts_seen_by(pod_env, web, pid)
    pod_env.run("start", cache, check=True)
    assert hosts_seen_by(pod_env, web, pid)["cache"] == pod_env.inspect(cache)["ip"]
    # and the new pod knows the others
    assert fetch_in(pod_env, cache, "http://db:5432/") == "hello from db"
    pod_env.run("rm", "-f", "-t", "0", cache, check=True)
    assert "cache" not in hosts_seen_by(pod_env, web, pid)
    assert "web" not in (pod_env.root / "pods" / stranger / "etc" / "hosts").read_text()


def test_names_kept_by_an_older_nspod_carry_over(pod_env: PodEnv) -> None:
    # pods running across an upgrade: an older nspod kept a file per pod under
    # networks/NAME/pods/ where this one keeps one .entries file
    a, b = pod_env.create("a"), pod_env.create("b")
    pods = pod_env.root / "networks" / "nspod" / "pods"
    entries = (pods / ".entries").read_text().splitlines()
    (pods / ".entries").unlink()
    for line in entries:
        pod, entry = line.split(" ", 1)
        (pods / pod).write_text(entry + "\n")
    c = pod_env.create("c")
    assert sorted(p.name for p in pods.iterdir()) == [".entries"]
    hosts = (pod_env.root / "pods" / c / "etc" / "hosts").read_text()
    assert {line.split()[1] for line in hosts.split("# nspod network nspod\n")[1].splitlines()} \
        == {a, b}
    assert "\tc\n" in (pod_env.root / "pods" / a / "etc" / "hosts").read_text()


# -- rm, prune, gc ------------------------------------------------------------------------


def network_traces(env: PodEnv, name: str, bridge: str) -> list[str]:
    out = []
    if bridge in links():
        out.append(f"bridge {bridge}")
    if any(bridge in el for el in nft_elements(env.table, "set")):
        out.append("nft elements")
    if (env.root / "networks" / name).exists():
        out.append("record")
    key = hashlib.sha256(str(env.root.resolve()).encode()).hexdigest()[:10]
    if (FORWARD_HOLDERS / f"{key}-{name}").exists():
        out.append("ip_forward hold")
    return out


def test_network_rm_is_refused_while_pods_use_it_and_f_removes_them(pod_env: PodEnv) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    pod_env.run("network", "create", "n", check=True)
    bridge = str(net_info(pod_env, "n")["bridge"])
    pod_env.create("p1", "--net", "n", "-p", f"{free_port()}:80")
    pod_env.create("p2", "--net", "n")
    pod_env.run("stop", "p2", check=True)
    r = pod_env.run("network", "rm", "n")
    assert r.returncode == 125
    assert r.stderr == 'nspod: network rm "n": used by pods p1, p2 (rm -f removes them first)\n'
    assert network_traces(pod_env, "n", bridge) == ["bridge " + bridge, "nft elements", "record",
                                                    "ip_forward hold"]
    assert pod_env.run("network", "rm", "-f", "n").returncode == 0
    assert pod_env.run("ls", "-q").stdout == ""
    assert network_traces(pod_env, "n", bridge) == []
    assert nft_elements(pod_env.table) == []


def test_prune_keeps_the_default_network_and_those_in_use(pod_env: PodEnv) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    for n in ("used", "unused"):
        pod_env.run("network", "create", n, check=True)
    pod_env.create("p", "--net", "used")
    pod_env.create("q")
    assert pod_env.run("network", "prune", check=True).stdout.split() == ["unused"]
    assert pod_env.run("network", "ls", "-q").stdout.split() == ["nspod", "used"]


def test_create_on_a_missing_network_is_refused(pod_env: PodEnv) -> None:
    r = pod_env.run("create", "p", "--net", "nowhere")
    assert r.returncode == 125
    assert r.stderr == ('nspod: network "nowhere": no such network '
                        "(nspod network create nowhere)\n")
    assert pod_env.run("ls", "-q").stdout == ""


@pytest.mark.parametrize("step", ["network-record", "network-wire"])
def test_killed_network_create_is_collected_by_gc(pod_env: PodEnv, step: str) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env), "NSPOD_KILL_AT": step}
    r = pod_env.run("network", "create", "n")
    assert r.returncode == -9
    bridge = f"{pod_env.bridge}-1"
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    pod_env.run("gc", check=True)
    assert network_traces(pod_env, "n", bridge) == []
    assert pod_env.run("network", "ls", "-q").stdout == ""


def test_failed_network_create_leaves_nothing(pod_env: PodEnv) -> None:
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env), "NSPOD_FAIL_AT": "network-wire"}
    r = pod_env.run("network", "create", "n")
    assert r.returncode == 125 and r.stderr == "nspod: injected failure at network-wire\n"
    assert network_traces(pod_env, "n", f"{pod_env.bridge}-1") == []


def test_default_network_is_described_by_the_environment(pod_env: PodEnv) -> None:
    pod_env.create("p")
    info = net_info(pod_env, "nspod")
    assert (info["bridge"], info["subnet"], info["default"]) == (pod_env.bridge, pod_env.subnet,
                                                                 True)
    assert info["pods"] == {"p": pod_env.inspect("p")["ip"]}


def test_usage_errors(pod_env: PodEnv) -> None:
    r = pod_env.run("network", "create", "bad/name")
    assert r.returncode == 2
    r = pod_env.run("network", "create", "n", "--subnet", "10.0.0.1/24")
    assert r.returncode == 2 and "--subnet '10.0.0.1/24'" in r.stderr
    r = pod_env.run("network", "frob")
    assert r.returncode == 2 and r.stderr == ("nspod: network: unknown verb 'frob' "
                                              "(see nspod network --help)\n")


def test_ip_forward_is_given_back_by_the_last_network(pod_env: PodEnv,
                                                      dummies: list[str]) -> None:
    switch = Path("/proc/sys/net/ipv4/ip_forward")
    before = switch.read_text().strip()
    pod_env.extra = {"NSPOD_SUBNET_POOL": pool(pod_env)}
    pod_env.run("network", "create", "n", check=True)
    assert switch.read_text().strip() == "1"
    # another runtime's bridge, made while forwarding is on, needs its own value kept
    other = add_dummy(dummies, pod_env, f"100.{random.randrange(64, 128)}.0.1/30")
    conf = Path(f"/proc/sys/net/ipv4/conf/{other}/forwarding")
    assert conf.read_text().strip() == "1"
    pod_env.run("network", "rm", "n", check=True)
    held = [p for p in FORWARD_HOLDERS.iterdir() if p.name not in ("prior.json", ".lock")] \
        if FORWARD_HOLDERS.exists() else []
    if held:
        pytest.skip(f"other networks hold ip_forward: {held}")
    assert switch.read_text().strip() == before
    assert conf.read_text().strip() == "1"
