"""JSON and files for the paths that must start fast (join, ps, logs).

`import json` costs ~10 ms here (it imports re); CPython's C scanner and
encoder in `_json` do the same work with no import cost. Falls back to json
on an interpreter without them.
"""

from __future__ import annotations

import os

from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

def _skip(text: str) -> int:
    return len(text) - len(text.lstrip())


try:
    import _json

    class _Ctx:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float
        memo: dict[str, Any] = {}

    def _no_default(o: object) -> object:
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    _scan = _json.make_scanner(_Ctx())  # type: ignore[arg-type]  # duck-typed context
    _encode = _json.make_encoder(
        None, _no_default, _json.encode_basestring_ascii, None, ": ", ", ", True, False, True
    )

    def _decode(text: str) -> tuple[Any, int]:
        return _scan(text, _skip(text))

    def dumps(obj: Any) -> str:
        return "".join(_encode(obj, 0))

except (ImportError, AttributeError):  # an interpreter without _json: tested
    import json

    def _decode(text: str) -> tuple[Any, int]:
        return json.JSONDecoder().raw_decode(text, _skip(text))

    def dumps(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True)


def loads(text: str) -> Any:
    """The one JSON value text holds. ValueError for anything else.

    The C scanner signals bad input its own ways (StopIteration at a value
    that cannot start, SystemError on some truncated input, RecursionError
    when nested too deep): each becomes ValueError here.
    """
    try:
        obj, end = _decode(text)
    except StopIteration as e:
        raise ValueError(f"not JSON at character {e.value}") from None
    except (SystemError, RecursionError, ValueError) as e:
        detail = str(e) if isinstance(e, ValueError) else "truncated or malformed"
        raise ValueError(f"not JSON: {detail}") from None
    if text[end:].strip():
        raise ValueError("extra data after JSON value")
    return obj


def read_text(path: str, dir_fd: int | None = None, follow: bool = False) -> str:
    """The text of a file. State files are never read through a symlink (follow=False:
    O_NOFOLLOW), so one planted in the state root cannot feed nspod another file."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        return read_fd(fd).decode()
    finally:
        os.close(fd)


def read_fd(fd: int) -> bytes:
    """What is left to read of fd, to its end."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def mounts(text: str | None = None) -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of each mount in text, proc(5)'s
    mountinfo format (default: this process's /proc/self/mountinfo), with the
    kernel's octal escapes in mount points undone (space, tab, newline, \\)."""
    if text is None:
        with open("/proc/self/mountinfo", "rb") as f:
            text = f.read().decode(errors="surrogateescape")
    out = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(" "), post.split(" ")
        if sep and len(fields) >= 5 and len(tail) >= 3:
            out.append((_unescape(fields[4]), tail[0], tail[2]))
    return out


def _unescape(path: str) -> str:
    if "\\" not in path:
        return path
    for code in ("040", "011", "012", "134"):  # \134 (a backslash) last
        path = path.replace("\\" + code, chr(int(code, 8)))
    return path


def write_atomic(path: str, text: str, dir_fd: int | None = None, sync: bool = True) -> None:
    """Replaces path with text: a reader sees the old file or the new, whole.

    sync=False skips the fsync: for records that die with the pod anyway,
    written on the hot path of join (the state root is normally tmpfs).
    """
    tmp = f".{os.path.basename(path)}.{os.getpid()}.tmp"
    tmp = os.path.join(os.path.dirname(path), tmp)
    # O_EXCL|O_NOFOLLOW: a symlink (or anything) planted at the temporary name is
    # removed, never written through
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
        except FileExistsError:
            os.unlink(tmp, dir_fd=dir_fd)
            fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
        try:
            os.write(fd, text.encode())
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as e:  # a full or read-only state directory: nothing half-written stays
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise OSError(e.errno, e.strerror, path) from None


def proc_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie pid, else None."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    rest = data[data.rindex(b")") + 2 :].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


NAME_MAX = 63  # of pods and members: a hostname label, a file name
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def valid_name(name: str) -> bool:
    """[a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 63 characters (no `re`: it costs ~10 ms)."""
    return (
        0 < len(name) <= NAME_MAX
        and name[0] in _NAME_FIRST
        and all(ch in _NAME_REST for ch in name)
    )


def convert(text: str, kind: Callable[[str], T], what: str) -> T:
    """kind(text), or ValueError saying text is not what (an option's value)."""
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{text!r} is not {what}") from None


def check_name(name: str, what: str = "pod name") -> str:
    """name, if valid_name; else UsageError saying what is wrong with it."""
    if valid_name(name):
        return name
    if not name:
        raise UsageError(f'invalid {what} "": must not be empty')
    if len(name) > NAME_MAX:
        raise UsageError(f'invalid {what} "{name[:20]}...": longer than {NAME_MAX} characters')
    raise UsageError(f"invalid {what} {dumps(name)}: use letters, digits, '_', '.', '-', "
                     "starting with a letter or digit")


def checkpoint(step: str) -> None:
    """Crash-injection hook for tests: NSPOD_FAIL_AT=STEP fails there, NSPOD_KILL_AT kills."""
    if os.environ.get("NSPOD_FAIL_AT") == step:
        from nspod.errors import NspodError

        raise NspodError(f"injected failure at {step}")
    if os.environ.get("NSPOD_KILL_AT") == step:
        os.kill(os.getpid(), 9)  # SIGKILL


def run(argv: list[str], stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Runs argv (PATH lookup) with stdin; returns (exit code, stdout, stderr).

    What subprocess.run does for nspod's few helper commands (nft), without
    its ~15 ms import.
    """
    import select

    fds = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
    (in_r, in_w), (out_r, out_w), (err_r, err_w) = fds
    try:
        pid = _spawn_tied(argv, in_r, out_w, err_w)
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    out: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    for fd in out:
        poller.register(fd, select.POLLIN)
    pending = stdin
    if pending:
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
    open_fds = set(out)
    while open_fds:
        for fd, _ in poller.poll():
            if fd == in_w:
                try:
                    n = os.write(in_w, pending[:65536])
                except BrokenPipeError:
                    n = len(pending)
                pending = pending[n:]
                if not pending:
                    poller.unregister(in_w)
                    os.close(in_w)
                continue
            chunk = os.read(fd, 65536)
            if chunk:
                out[fd].append(chunk)
            else:
                poller.unregister(fd)
                os.close(fd)
                open_fds.discard(fd)
    if pending:
        os.close(in_w)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code, b"".join(out[out_r]), b"".join(out[err_r])


def _spawn_tied(argv: list[str], stdin: int, stdout: int, stderr: int) -> int:
    """Starts argv on those fds, killed if nspod dies first (prctl(2): PR_SET_PDEATHSIG).

    A helper outliving a killed nspod would act after it: an `nft` adding a
    port rule once gc has freed the pod (issue 12). Without python-prctl's
    C module, posix_spawn, untied.
    """
    try:
        import _prctl
    except ImportError:
        return os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2)])
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
                os.dup2(fd, target)
            _prctl.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
            if os.getppid() == parent:  # else nspod died before the tie was made
                os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, f"Error: run {argv[0]}: {e.strerror}\n".encode())
        finally:
            os._exit(127)
    return pid


def sha256_hex(data: bytes) -> str:
    """sha256 hex digest; hashlib would load OpenSSL (~10 ms) for one call.

    The C module is private: `_sha256` up to Python 3.11, `_sha2` from 3.12;
    hashlib is the public fallback (tests/unit/test_lean.py runs each path).
    """
    for private in ("_sha256", "_sha2"):
        try:
            mod = __import__(private)
        except ImportError:
            continue
        return str(mod.sha256(data).hexdigest())
    import hashlib

    return hashlib.sha256(data).hexdigest()
