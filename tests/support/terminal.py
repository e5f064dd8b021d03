"""
A program run on a pseudo-terminal, as a user runs it in a terminal: what
is typed goes to the pty, what it prints is read back, Ctrl-C is the
terminal's SIGINT.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time
from collections.abc import Sequence

from . import DEADLINE


class Terminal:
    """
    C{argv} on a new pty, as the session leader with the pty as its
    controlling terminal (so that Ctrl-C, written as C{\\x03}, interrupts it).
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.output = b""
        pid, self.fd = pty.fork()
        if pid == 0:  # the child: the pty is its stdin, stdout and stderr
            try:
                os.execve(argv[0], list(argv), env)
            finally:
                os._exit(127)
        self.pid = pid
        self.status: int | None = None

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _read(self, timeout: float) -> bool | None:
        """
        Read what is there within C{timeout}: True if something came, None
        if nothing did, False at the end (the program closed the pty).
        """
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the program ended and closed the pty
            data = b""
        self.output += data
        return bool(data)

    def expect(self, pattern: bytes, since: int = 0, deadline: float = DEADLINE) -> int:
        """
        Read until C{pattern} (a regular expression) appears in the output
        after C{since}; return where its match ends. Fail past the deadline
        or when the program ends first.
        """
        end = time.monotonic() + deadline
        while True:
            found = re.search(pattern, self.output[since:])
            if found:
                return since + found.end()
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.output[since:]!r}")
            if self._read(min(left, 0.5)) is False:
                found = re.search(pattern, self.output[since:])
                if found:
                    return since + found.end()
                raise AssertionError(f"ended before {pattern!r}: {self.output!r}")

    def wait(self, deadline: float = DEADLINE) -> int:
        """
        Read what is left until the program exits; its exit status.
        """
        end = time.monotonic() + deadline
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > end:
                raise AssertionError(f"still running: {self.output!r}")
            self._read(0.05)
        while self._read(0):
            pass
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()
        os.close(self.fd)
