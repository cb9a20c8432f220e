"""join -t: relaying between the caller's terminal (or pipes) and the member's pty;
join without -t from a terminal: relaying it through pipes.

Imported only for -t or when the caller's stdio is a terminal: termios and
tty cost join nothing otherwise.
"""

from __future__ import annotations

import _signal as signal  # not `signal`: it imports enum, ~8 ms
import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Terminal:
    """Relays between the caller's terminal (or pipes) and the member's pty."""

    def __init__(self, master: int, interactive: bool) -> None:
        import termios

        self.termios = termios
        self.master = master
        self.interactive = interactive
        self.saved: list[Any] | None = None
        self.stdin_open = interactive
        if os.isatty(0):
            self.saved = termios.tcgetattr(0)
            self._copy_size()
            if interactive:
                import tty

                tty.setraw(0)
        self.old_winch = signal.signal(signal.SIGWINCH, lambda *_: self._copy_size())

    def _copy_size(self) -> None:
        try:
            self.termios.tcsetwinsize(self.master, self.termios.tcgetwinsize(0))
        except (OSError, AttributeError):
            pass

    def relay(self, poller: select.poll, fd: int) -> bool:
        if fd == -1:
            poller.register(self.master, select.POLLIN)
            if self.stdin_open:
                poller.register(0, select.POLLIN)
            return True
        if fd == -2:
            self._drain()
            return True
        if fd == self.master:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if not data:
                poller.unregister(self.master)
            else:
                _write_all(1, data)
        elif fd == 0:
            data = os.read(0, 65536)
            if data:
                _write_all(self.master, data)
            else:
                poller.unregister(0)
                self.stdin_open = False
                _write_all(self.master, b"\x04")  # end of input: ^D to the line discipline
        return True

    def _drain(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            _write_all(1, data)

    def restore(self) -> None:
        signal.signal(signal.SIGWINCH, self.old_winch)
        if self.saved is not None:
            self.termios.tcsetattr(0, self.termios.TCSADRAIN, self.saved)


class PipeRelay:
    """The caller's terminal, relayed through pipes to a member joined without -t.

    A member handed the terminal itself kept it after the join returned (a
    background child of it) and read what the administrator typed next, or
    changed its modes: no runtime gives a container the caller's terminal
    (podman and docker relay pipes; a pty with -t). Only the fds that are a
    terminal are relayed; files and pipes are passed as they are. stdin is
    relayed only while nspod is in the terminal's foreground (reading it from
    the background would stop nspod with SIGTTIN); otherwise /dev/null.
    """

    def __init__(self) -> None:
        self.stdio = [-1, -1, -1]  # the member's ends, for MemberSpec.stdio
        self.ours: dict[int, int] = {}  # our end -> the fd of nspod it relays to
        self.stdin_w = -1
        for fd in (0, 1, 2):
            if not os.isatty(fd):
                continue
            if fd == 0:
                try:
                    foreground = os.tcgetpgrp(0) == os.getpgrp()
                except OSError:
                    foreground = False
                if not foreground:
                    self.stdio[0] = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                    continue
                r, self.stdin_w = os.pipe()
                self.stdio[0] = r
            else:
                r, w = os.pipe()
                self.stdio[fd] = w
                self.ours[r] = fd

    def needed(self) -> bool:
        return self.stdio != [-1, -1, -1]

    def started(self) -> None:
        """The member has its ends: ours closed, so its exit is an end of file."""
        for fd in self.stdio:
            if fd >= 0:
                os.close(fd)
        self.stdio = [-1, -1, -1]

    def relay(self, poller: select.poll, fd: int) -> bool:
        if fd == -1:
            for r in self.ours:
                poller.register(r, select.POLLIN)
            if self.stdin_w >= 0:
                poller.register(0, select.POLLIN)
            return True
        if fd == -2:
            self._drain()
            return True
        if fd == 0:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            try:
                if data:
                    _write_all(self.stdin_w, data)
            except OSError:
                data = b""  # the member closed its stdin
            if not data:
                poller.unregister(0)
                os.close(self.stdin_w)
                self.stdin_w = -1
        elif fd in self.ours:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            try:
                if data:
                    _write_all(self.ours[fd], data)
            except OSError:
                data = b""  # the caller's terminal is gone: the member's output with it
            if not data:
                poller.unregister(fd)
        return True

    def _drain(self) -> None:
        for r, out in self.ours.items():
            while select.select([r], [], [], 0)[0]:
                try:
                    data = os.read(r, 65536)
                except OSError:
                    break
                if not data:
                    break
                try:
                    _write_all(out, data)
                except OSError:
                    break

    def close(self) -> None:
        self.started()
        for r in self.ours:
            os.close(r)
        self.ours = {}
        if self.stdin_w >= 0:
            os.close(self.stdin_w)
            self.stdin_w = -1


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
