"""
C{python -m wsecho.daemon.healthcheck}: exit 0 if the daemon configured by this
environment answers C{/readyz} with 200, 1 otherwise; for a container's
health check (C{deploy/Dockerfile}), which runs with the container's
environment.

It finds the daemon as the daemon itself does, with its own options read
from the environment: its first listener (C{WSECHO_LISTEN}, C{tcp:},
C{ssl:} or C{unix:}, or else C{WSECHO_PORT} and C{WSECHO_INTERFACE}); an
address that listens on every interface is checked on loopback.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import sys
from collections.abc import Mapping, Sequence

from twisted.python.usage import UsageError

from wsecho.daemon.options import Options
from wsecho.daemon.parse import endpoint_fields

TIMEOUT = 3.0
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self._path)


def connection(environ: Mapping[str, str]) -> http.client.HTTPConnection:
    """
    An HTTP connection (not yet open) to the daemon C{environ} configures.
    """
    # Where the daemon's own options say it listens (its first listener).
    options = Options(environ=environ, check_listen=False)
    options.parseOptions([])
    listen = options["listen"][0]
    kind, positional, keywords = endpoint_fields(listen)
    if kind == "unix":
        return _UnixConnection(keywords.get("address") or positional[0])
    if kind not in ("tcp", "ssl"):
        raise UsageError(f"{listen!r}: not tcp:, ssl: or unix:")
    port = int(keywords.get("port") or positional[0])
    interface = keywords.get("interface", "")
    host = _ANY.get(interface, interface)
    if kind == "ssl":
        # Whether the certificate is good is not this check's question.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
    return http.client.HTTPConnection(host, port, timeout=TIMEOUT)


def check(environ: Mapping[str, str]) -> str | None:
    """
    L{None} if the daemon is ready; otherwise why not.
    """
    try:
        conn = connection(environ)
        conn.request("GET", "/readyz")
        status = conn.getresponse().status
    except (
        OSError,
        ValueError,
        IndexError,
        UsageError,
        http.client.HTTPException,
    ) as e:
        return f"not ready: {e}"
    return None if status == 200 else f"not ready: /readyz answered {status}"


def main(argv: Sequence[str] | None = None) -> None:
    problem = check(os.environ)
    if problem is not None:
        print(f"wsecho.daemon.healthcheck: {problem}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
