"""
The HTTP side: the index page at C{/}, the echo at C{/socket}, and the checks
that answer a request with an HTTP status before it becomes a WebSocket.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.resources import files
from typing import Any, cast
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.util import peer2str
from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.util import wildcards2patterns
from twisted.internet.interfaces import ITransport
from twisted.logger import Logger
from twisted.web import server, static
from twisted.web.resource import Resource

from .echo import EchoServerFactory, EchoSettings, make_factory

# Sent on every HTTP response instead of "TwistedWeb/<version>": version
# numbers in a banner only help whoever is looking for a vulnerable one.
SERVER_NAME = b"wsecho"

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    """
    Split a Host header or an origin's authority into a lower-case host name
    and a port (the scheme's default when absent); L{None} when malformed.
    """
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS.get(scheme)


class OriginPolicy:
    """
    The seed's CheckOrigin, safe by default: browsers may connect from the
    page's own origin; other origins only where an C{--allowed-origin}
    pattern says so. Clients that send no C{Origin} (not browsers) pass.

    Patterns are Autobahn's: C{*} is a wildcard, matched against the whole
    origin, with or without its default port (C{https://*.example.com} and
    C{https://*.example.com:443} both match C{https://a.example.com}).
    C{*} alone allows every origin, C{null} included; C{null} allows the
    C{null} origin of sandboxed and C{file:} pages.
    """

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allow_all = "*" in allowed
        self.allow_null = "null" in allowed
        self._patterns: list[re.Pattern[str]] = wildcards2patterns(
            [a for a in allowed if a not in ("*", "null")]
        )

    def allows(self, origin: str | None, host: str | None) -> bool:
        """
        May a handshake that carries C{origin} and was sent to C{host} (its
        Host header) go ahead?
        """
        if origin is None or self.allow_all:
            return True
        origin = origin.strip()
        if origin.lower() == "null":
            return self.allow_null
        parts = urlsplit(origin)
        scheme = parts.scheme.lower()
        theirs = _host_and_port(parts.netloc, scheme)
        if theirs is None or parts.path not in ("", "/"):
            return False
        # Same origin: the page was served by the host the browser is now
        # talking to. The port counts; the scheme does not, so that a page
        # served over https by a TLS-terminating proxy still matches.
        if host is not None and _host_and_port(host, scheme) == theirs:
            return True
        name, port = theirs
        candidates = [f"{scheme}://{name}:{port}"]
        if port == _DEFAULT_PORTS.get(scheme):
            candidates.append(f"{scheme}://{name}")
        return any(p.match(c) for p in self._patterns for c in candidates)


def _text(request: server.Request, code: int, phrase: bytes, body: str) -> bytes:
    request.setResponseCode(code, phrase)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return body.encode("utf-8")


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None


class EchoResource(WebSocketResource):
    """
    C{/socket}: hands WebSocket upgrades to Autobahn after the checks that
    deserve an HTTP answer of their own with a body.
    """

    _log = Logger()

    def __init__(self, factory: WebSocketServerFactory, origins: OriginPolicy) -> None:
        super().__init__(factory)
        self._origins = origins

    def render(self, request: server.Request) -> bytes | int:
        if request.postpath:
            # The resource is a leaf, so /socket/anything lands here too.
            return _text(request, 404, b"Not Found", "No such resource.\n")
        upgrade = request.getHeader(b"upgrade") or b""
        if b"websocket" not in upgrade.lower():
            request.setHeader(b"Upgrade", b"websocket")
            return _text(
                request,
                426,
                b"Upgrade Required",
                "This is a WebSocket endpoint: connect with a WebSocket client "
                "(Upgrade: websocket).\n",
            )
        origin = _header(request, b"origin")
        if not self._origins.allows(origin, _header(request, b"host")):
            self._log.info(
                "refused {peer}: origin {origin!r} not allowed",
                peer=peer2str(cast(ITransport, request.channel.transport)),
                origin=origin,
            )
            # The client came to switch protocols, not to keep talking HTTP.
            request.setHeader(b"Connection", b"close")
            request.channel.persistent = False
            return _text(request, 403, b"Forbidden", "Origin not allowed.\n")
        return super().render(request)  # type: ignore[no-any-return]


class Health(Resource):
    """
    C{/healthz}: the process is alive. C{/readyz}: it takes new connections
    (503 once it has begun shutting down, for load balancers).
    """

    isLeaf = True

    def __init__(self, factory: EchoServerFactory, readiness: bool) -> None:
        super().__init__()
        self._factory = factory
        self._readiness = readiness

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Cache-Control", b"no-store")
        if self._readiness and self._factory.draining:
            return _text(request, 503, b"Service Unavailable", "shutting down\n")
        return _text(request, 200, b"OK", "ready\n" if self._readiness else "ok\n")

    render_HEAD = render_GET


class _Request(server.Request):
    def render(self, resrc: Resource) -> None:
        self.setHeader(b"Server", SERVER_NAME)
        super().render(resrc)


class Site(server.Site):
    """
    The HTTP service, with the echo's factory at hand for shutting down.
    """

    requestFactory = _Request

    def __init__(
        self, resource: Resource, echo_factory: EchoServerFactory, **kwargs: Any
    ) -> None:
        super().__init__(resource, **kwargs)
        self.echo_factory = echo_factory


def index_page() -> bytes:
    return files("wsecho").joinpath("index.html").read_bytes()


def make_site(settings: EchoSettings) -> Site:
    """
    The whole HTTP service: the index at C{/}, the echo at C{/socket}, and
    the health checks at C{/healthz} and C{/readyz}.
    """
    factory = make_factory(settings)
    root = Resource()
    root.putChild(b"", static.Data(index_page(), "text/html; charset=utf-8"))
    root.putChild(
        b"socket", EchoResource(factory, OriginPolicy(settings.allowed_origins))
    )
    root.putChild(b"healthz", Health(factory, readiness=False))
    root.putChild(b"readyz", Health(factory, readiness=True))
    # twisted.web reads the upgrade request before Autobahn sees it, so the
    # opening-handshake timeout is also the HTTP idle timeout: a connection
    # that never finishes its request is closed after it. (It restarts with
    # every byte received; a slow sender needs more than this.)
    return Site(root, factory, timeout=settings.open_handshake_timeout or None)
