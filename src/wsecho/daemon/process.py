"""
What the daemon's process does apart from serving: its signals, its file
limit, its listen backlog, its start-up line, and a clean exit when it
cannot listen.
"""

from __future__ import annotations

import resource
import signal
import socket
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

_log = Logger()


def bound(port: IListeningPort, tls: bool) -> str:
    """
    Where C{port} listens, as bound (port 0 resolved): C{127.0.0.1:8443
    (TLS)}, C{[::1]:8181}, C{unix:/run/wsecho.sock}.
    """
    host = port.getHost()
    if isinstance(host, IPv6Address):
        where = f"[{host.host}]:{host.port}"
    elif isinstance(host, IPv4Address):
        where = f"{host.host}:{host.port}"
    elif isinstance(host, UNIXAddress):
        name = host.name
        where = "unix:" + (
            name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        )
    else:
        where = str(host)
    return f"{where} (TLS)" if tls else where


def announce(startup: dict[str, Any] | None, listening: Sequence[str]) -> None:
    """
    One line at start-up: wsecho's version, every address it listens on as
    bound, how many workers, the options that are not defaults; then a
    warning for each thing that is likely not what was meant.
    """
    if startup is None:
        return
    _log.info(
        "wsecho {version} listening on {listen}, {workers} worker(s), "
        "{http}, options: {options}",
        version=startup["version"],
        listen=", ".join(listening),
        workers=startup["workers"],
        http=startup.get("http", "HTTP/1.1 and HTTP/2"),
        options=startup["options"],
    )
    for warning in startup.get("warnings", ()):
        _log.warn("{warning}", warning=warning)


def take_signals(
    reactor: Any,
    on_stop: Callable[[signal.Signals], None],
    on_hangup: Callable[[], None],
) -> None:
    """
    Take SIGTERM and SIGINT (C{on_stop}) and SIGHUP (C{on_hangup}) over from
    the reactor; both are called in the reactor's thread. twistd then exits
    0 on a stop signal, not by the signal; and a reload (systemctl reload)
    does not kill a daemon that has no TLS files to reload.
    """

    def stop(number: int, frame: Any) -> None:
        reactor.callFromThread(on_stop, signal.Signals(number))

    def hangup(number: int, frame: Any) -> None:
        reactor.callFromThread(on_hangup)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, stop)
    signal.signal(signal.SIGHUP, hangup)
    # A worker starts with SIGHUP blocked (see WorkerPool._start), so that a
    # reload while it starts waits for this handler instead of killing it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


_BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix")


def listen_backlog() -> int:
    """
    The system's largest listen backlog (Linux's somaxconn), which Go takes
    for the seed server; Twisted's default of 50 drops connections that
    arrive in a burst.
    """
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(int(f.read()), 50)
    except (OSError, ValueError):
        return socket.SOMAXCONN


def with_backlog(description: str) -> str:
    """
    C{description} listening with L{listen_backlog}, unless it names a
    backlog of its own.
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in _BACKLOG_TYPES or "backlog=" in description:
        return description
    return f"{description}:backlog={listen_backlog()}"


def raise_file_limit() -> None:
    """
    Every connection is a file descriptor, and the usual soft limit (1024)
    is far below what one process can serve: take the hard limit, as Go's
    runtime does for the seed server.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (
        hard == resource.RLIM_INFINITY or soft < hard
    ):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # e.g. an infinite hard limit that the kernel caps


def exit_if_cannot_listen(start: Callable[[], None]) -> None:
    """
    Run C{start}; exit with one line if it cannot listen. The daemon
    listens in C{makeService}, before twistd writes its pidfile and forks
    (L{wsecho.daemon.tap.makeService}): the line reaches the terminal and
    the exit status is 1, with or without C{-n}.
    """
    try:
        start()
    except CannotListenError as e:
        where = f"{e.interface}:{e.port}" if e.interface else f"{e.port}"
        raise SystemExit(f"wsecho: cannot listen on {where}: {e.socketError}") from None
    except OSError as e:
        # A UNIX socket's lock file, for one, fails before the bind does.
        raise SystemExit(f"wsecho: cannot listen: {e}") from None
