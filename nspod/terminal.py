"""join -t: relaying between the caller's terminal (or pipes) and the member's pty.

Imported only for -t: termios and tty cost join nothing otherwise.
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


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
