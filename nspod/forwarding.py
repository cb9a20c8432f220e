"""net.ipv4.ip_forward: on while a network of nspod needs it, as it was once none does.

A pod's packet to the outside enters the host on its bridge and leaves by
another interface; the reply enters on that other interface (eth0). IPv4
forwards a packet only when forwarding is on for the interface it arrived on
(ip-sysctl.rst: conf/interface/forwarding), and which interfaces carry the
replies depends on the host's routes now and later (a VPN coming up), so,
as docker and podman do, nspod turns on the host-wide switch. Unlike them it
gives it back: each network holds it by a file in HOLDERS (host-wide, since
several state roots may run at once), and when the last holder goes, the
switch and every interface's value are restored as they were when nspod
turned it on (an interface made since keeps the value it has).

    /run/nspod-forward/prior.json           {"ip_forward": "0", "ifaces": {"eth1": "1"}}
    /run/nspod-forward/<root key>-<network> the state root that holds it
"""

from __future__ import annotations

import os

from nspod import lean
from nspod.errors import NspodError, os_reason

HOLDERS = "/run/nspod-forward"
SWITCH = "/proc/sys/net/ipv4/ip_forward"
CONF = "/proc/sys/net/ipv4/conf"


def root_key(root: str) -> str:
    return lean.sha256_hex(os.path.abspath(root).encode())[:10]


def holder_name(root: str, network: str) -> str:
    return f"{root_key(root)}-{network}"


def _read(path: str) -> str:
    return lean.read_text(path).strip()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value + "\n")


class _Lock:
    def __enter__(self) -> None:
        import fcntl

        os.makedirs(HOLDERS, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(HOLDERS, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                          0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _values() -> dict[str, str]:
    """Each interface's own forwarding value (and default's)."""
    out = {}
    for name in os.listdir(CONF):
        try:
            out[name] = _read(os.path.join(CONF, name, "forwarding"))
        except OSError:
            continue
    return out


def is_on() -> bool:
    try:
        return _read(SWITCH) == "1"
    except OSError:
        return False


def hold(root: str, network: str) -> None:
    """Records that network needs forwarding and turns the switch on if it is off."""
    try:
        with _Lock():
            lean.write_atomic(os.path.join(HOLDERS, holder_name(root, network)),
                              os.path.abspath(root) + "\n", sync=False)
            if _read(SWITCH) == "1":
                return
            prior = os.path.join(HOLDERS, "prior.json")
            if not os.path.exists(prior):
                lean.write_atomic(prior, lean.dumps({"ip_forward": "0", "ifaces": _values()}))
            _write(SWITCH, "1")
    except OSError as e:
        raise NspodError(f"turn on net.ipv4.ip_forward: {os_reason(e)}") from e


def release(root: str, network: str) -> None:
    """Drops network's hold; the last one out restores what was there before.

    Every network holds it, internal ones too: writing the switch resets
    every interface's own value, a bridge's included, so it is given back
    only when no bridge of nspod is left to need its own.
    """
    try:
        with _Lock():
            try:
                os.unlink(os.path.join(HOLDERS, holder_name(root, network)))
            except FileNotFoundError:
                pass
            if any(not n.startswith(".") and n != "prior.json" for n in os.listdir(HOLDERS)):
                return
            prior_path = os.path.join(HOLDERS, "prior.json")
            try:
                prior = lean.loads(lean.read_text(prior_path))
            except FileNotFoundError:
                return  # the switch was on before nspod: it stays on
            # writing the switch sets every interface's value: an interface
            # made since (another bridge, nspod's or not) keeps what it has
            values = _values()
            values.update(prior.get("ifaces", {}))
            _write(SWITCH, str(prior.get("ip_forward", "0")))
            for name, value in values.items():
                if name == "all":
                    continue
                path = os.path.join(CONF, name, "forwarding")
                try:
                    if _read(path) != value:
                        _write(path, value)
                except OSError:
                    continue  # the interface is gone
            os.unlink(prior_path)
    except OSError as e:
        raise NspodError(f"restore net.ipv4.ip_forward: {os_reason(e)}") from e


def release_stale() -> None:
    """Drops holds whose network record is gone, whatever their state root (gc).

    A root removed by hand (rm -rf of a test's /tmp root, a reboot of a
    persistent root) leaves holds no verb of its own would ever release.
    """
    try:
        entries = [n for n in os.listdir(HOLDERS) if n != "prior.json" and not n.startswith(".")]
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            root = lean.read_text(os.path.join(HOLDERS, entry)).strip()
        except OSError:
            continue
        network = entry.partition("-")[2]
        if root and entry == holder_name(root, network) and not os.path.exists(
                os.path.join(root, "networks", network, "network.json")):
            release(root, network)


def held_by(root: str) -> list[str]:
    """Networks of the state root that hold the switch (gc, leak checks)."""
    prefix = root_key(root) + "-"
    try:
        return [n[len(prefix):] for n in os.listdir(HOLDERS) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
