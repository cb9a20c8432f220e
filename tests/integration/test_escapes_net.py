"""Issue 18: no way out of a pod through the network. Each attack runs from a pod.

Both succeeded against nspod before issue 18; SECURITY.md lists the defences.
"""

import subprocess
import time
from pathlib import Path

import pytest
from conftest import PodEnv

pytestmark = pytest.mark.root


# -- 11 and 12: the network ------------------------------------------------------------------


RA_SCRIPT = r"""
import socket, struct, time
def ready():
    for line in open('/proc/net/if_inet6'):
        f = line.split()
        if f[5] == 'eth0' and f[0].startswith('fe80') and not int(f[4], 16) & 0x40:
            return True
while not ready():
    time.sleep(0.05)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'eth0')
prefix = socket.inet_pton(socket.AF_INET6, '2001:db8:18::')
ra = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 1800, 0, 0)
pi = struct.pack('!BBBBIII', 3, 4, 64, 0xC0, 86400, 14400, 0) + prefix
for _ in range(3):
    s.sendto(ra + pi, ('ff02::1', 0, 0, socket.if_nametoindex('eth0')))
    time.sleep(0.1)
print('sent')
"""


def test_router_advert_from_a_pod_does_not_configure_the_host(pod_env: PodEnv) -> None:
    if not Path("/proc/sys/net/ipv6").exists():
        pytest.skip("IPv6 is off")
    pod_env.create("p")
    r = pod_env.run("join", "--cap-add", "NET_RAW", "p", "--", "python3", "-c", RA_SCRIPT,
                    timeout=30)
    assert r.stdout.strip() == "sent", r
    time.sleep(0.5)
    addrs = subprocess.run(["ip", "-6", "addr", "show", "dev", pod_env.bridge],
                           capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "-6", "route", "show", "dev", pod_env.bridge],
                            capture_output=True, text=True).stdout
    assert "2001:db8:18:" not in addrs + routes, addrs + routes
    assert "default" not in routes, routes


ARP_SCRIPT = r"""
import socket, struct, sys
gw, victim_ip, victim_mac, my_mac = sys.argv[1:5]
mac = lambda m: bytes.fromhex(m.replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 2, mac(my_mac), socket.inet_aton(gw),
                  mac(victim_mac), socket.inet_aton(victim_ip))
for _ in range(3):
    s.send(mac(victim_mac) + mac(my_mac) + b'\x08\x06' + arp)
print('sent')
"""


def test_pod_cannot_spoof_arp_for_another(pod_env: PodEnv) -> None:
    a, b = pod_env.create("a"), pod_env.create("b")
    ia, ib = pod_env.inspect(a), pod_env.inspect(b)
    gw = str(ib["gateway"])
    # b talks to its gateway: an entry for it in b's neighbour table
    pod_env.run("join", b, "--", "python3", "-c",
                f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                f" s.sendto(b'x', ('{gw}', 9))", check=True)
    time.sleep(1.2)  # past neigh locktime (1 s): an entry that old may be replaced
    before = pod_env.run("join", b, "--", "ip", "neigh", "show", gw, check=True).stdout
    assert "lladdr" in before, before
    r = pod_env.run("join", a, "--", "python3", "-c", ARP_SCRIPT, gw, str(ib["ip"]),
                    str(ib["mac"]), str(ia["mac"]))
    after = pod_env.run("join", b, "--", "ip", "neigh", "show", gw, check=True).stdout
    assert str(ia["mac"]) not in after, after
    assert r.returncode != 0 and "PermissionError" in r.stderr, r
