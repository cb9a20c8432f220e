"""nspod's exceptions: the one hierarchy. A leaf module: it imports nothing of
the package.

Each class knows its exit code; the CLI prints `nspod: <message>` once.
Anything else that reaches main is an internal error (125).
"""

USAGE = 2
FAILED = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127


class NspodError(Exception):
    """A failure nspod reports as one line and an exit code."""

    code = FAILED


class UsageError(NspodError):
    code = USAGE


class PodExists(NspodError):
    pass


class NoSuchPod(NspodError):
    pass


class PodNotRunning(NspodError):
    pass


class NotRoot(NspodError):
    pass


class DamagedRecord(NspodError):
    """A state file that cannot be read as what it should be: `damaged record PATH: why`."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"damaged record {path}: {why}")
        self.path = path


class AddressUnavailable(NspodError):
    """--ip taken or outside the subnet, or no address left."""


class PortUnavailable(NspodError):
    """A host port another pod (or process) holds."""


class FirewallError(NspodError):
    """nft refused a change."""


class NetError(NspodError):
    """A netlink or sysctl step of a pod's network failed."""


class NoSuchNetwork(NspodError):
    pass


class NetworkExists(NspodError):
    pass


class NetworkInUse(NspodError):
    pass


class UnknownUser(NspodError):
    """--user names a user or group the member's root does not know."""


class NoSuchImage(NspodError):
    pass


class ImageInUse(NspodError):
    pass


class ExecFailed(NspodError):
    """The command could not be executed: 126 (found, not runnable) or 127."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def os_reason(err: OSError) -> str:
    """The lower-case strerror of err, e.g. 'no such file or directory'."""
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]
