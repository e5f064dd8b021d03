"""
Real C{twistd -n wsecho} processes, as users start them, with their logs
read line by line, and what /proc says of them.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from . import BIN, DEADLINE


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now: only for
    programs that cannot listen on port 0 and say where (HAProxy, nginx);
    a wsecho daemon is started on port 0 (L{start_daemon}).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """
    A real C{twistd -n wsecho} process, as a user starts it, with its log
    read line by line.
    """

    def __init__(
        self,
        cwd: Path,
        *args: str,
        twistd: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        # Where it listens, once start_daemon has read it from the log.
        self.port = 0
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.terminated = False
        self._ended = False
        if command is None:
            command = [str(BIN / "twistd"), "-n", "--pidfile=", *twistd, "wsecho"]
            command += args
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Sockets a supervisor passes (systemd's), if any.
            pass_fds=pass_fds,
        )
        self.pid = self.process.pid
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, text: str, deadline: float = DEADLINE) -> str:
        """
        Read the log until a line contains C{text}; fail past the deadline
        or when the process ends first.
        """
        end = time.monotonic() + deadline
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {text!r} in the log:\n{''.join(self.log)}"
                ) from None
            if not line:
                raise AssertionError(
                    f"twistd ended before logging {text!r}:\n{''.join(self.log)}"
                )
            self.log.append(line)
            if text in line:
                return line

    def whole_log(self) -> str:
        """
        The whole log, once the process has ended.
        """
        if not self._ended:
            while line := self.lines.get(timeout=DEADLINE):
                self.log.append(line)
            self._ended = True
        return "".join(self.log)

    def terminate(self) -> None:
        """
        Send SIGTERM, once: a second one could arrive as Python, exiting,
        has put back the default handlers, and kill the process.
        """
        if not self.terminated and self.process.poll() is None:
            self.terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        self.terminate()
        return self.process.wait(timeout=DEADLINE)


def start_daemon(cwd: Path, *args: str, **kwargs: Any) -> Daemon:
    """
    Start C{twistd -n wsecho} with C{args} (on C{--port 0} when they name
    no port or listener), and wait until it listens; its C{port} is the
    one the kernel chose, read from its log.
    """
    if not any(a.startswith(("--port", "--listen", "-p")) for a in args):
        env = kwargs.get("env") or {}
        if "WSECHO_PORT" not in env and "WSECHO_LISTEN" not in env:
            args = ("--port", "0", *args)
    daemon = Daemon(cwd, *args, **kwargs)
    line = daemon.wait_for(" starting on ")
    found = re.search(r" starting on (\d+)", line)
    daemon.port = int(found.group(1)) if found else 0
    return daemon


def rss(pid: int, field: str = "VmRSS") -> int:
    """
    A process's resident memory (or its peak, with C{VmHWM}), in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))
