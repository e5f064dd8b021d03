"""
The HTTP side: the index page at C{/}, the echo at C{/socket}, and the checks
that answer a request with an HTTP status before it becomes a WebSocket.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.util import peer2str
from autobahn.util import wildcards2patterns
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from ._compat import answers_unread, pause_reading, write_buffered
from .connections import EchoServerFactory
from .deflate import acceptable_offers
from .echo import EchoSettings, make_factory
from .logs import printable
from .metrics import MetricsResource
from .pages import Root, Styled, error_page

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
        try:
            parts = urlsplit(origin)
        except ValueError:  # "http://[oops": not an origin
            return False
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


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(entry: str) -> str:
    """
    The address in one forwarded entry (C{192.0.2.1}, C{192.0.2.1:4711},
    C{[2001:db8::1]:4711}, C{"[2001:db8::1]"}), normalised; anything else
    (C{unknown}, C{_hidden}) as it is.
    """
    entry = entry.strip().strip('"')
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return printable(entry[:64])


def _forwarded_for(values: Sequence[str], header: str) -> list[str]:
    """
    The addresses a chain of proxies forwarded, client first.
    """
    chain = []
    for value in values:
        for element in value.split(","):
            if header == "forwarded":
                for pair in element.split(";"):
                    name, _, forwarded = pair.partition("=")
                    if name.strip().lower() == "for":
                        chain.append(_address(forwarded))
            elif element.strip():
                chain.append(_address(element))
    return chain


class ProxyTrust:
    """
    Which proxies to believe about the client's address (C{--trust-proxy}):
    a number of proxies in front of wsecho, or the networks they are in.

    With a hop count I{n}, the client is the I{n}th address from the right
    of the forwarded chain followed by the peer: each proxy appends the
    address it got the connection from. With networks, the peer must be in
    one of them; the client is then the rightmost address of the chain that
    is not. Anything further left was written by the client and proves
    nothing.
    """

    def __init__(
        self,
        hops: int = 0,
        networks: Sequence[_Network] = (),
        header: str = "x-forwarded-for",
    ) -> None:
        self.hops = hops
        self.networks = tuple(networks)
        self.header = header

    @classmethod
    def parse(cls, values: Sequence[str], header: str) -> ProxyTrust | None:
        """
        From C{--trust-proxy} values: one hop count, or networks (CIDR or
        single addresses, comma-separated or repeated). L{ValueError} names
        a value that is neither.
        """
        if not values:
            return None
        items = [i.strip() for v in values for i in v.split(",") if i.strip()]
        if len(items) == 1 and items[0].isdigit():
            hops = int(items[0])
            if hops < 1:
                raise ValueError(items[0])
            return cls(hops=hops, header=header)
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(item) from None
        return cls(networks=networks, header=header)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_address(self, peer: str, request: server.Request) -> str:
        values = [
            v.decode("latin-1")
            for v in request.requestHeaders.getRawHeaders(self.header.encode(), [])
        ]
        chain = _forwarded_for(values, self.header)
        if self.hops:
            if len(chain) < self.hops:
                # Fewer proxies than we were told of: believe none.
                return peer
            return chain[-self.hops]
        if not self._trusted(peer):
            return peer
        for address in reversed(chain):
            if not self._trusted(address):
                return address
        return chain[0] if chain else peer


def _access_log(proxies: ProxyTrust) -> Any:
    """
    twisted.web's combined access log, naming the client a trusted proxy
    forwarded instead of the proxy.
    """

    def format(timestamp: str, request: server.Request) -> str:
        line: str = http.combinedLogFormatter(timestamp, request)
        peer = request.getClientAddress()
        client = proxies.client_address(getattr(peer, "host", "-"), request)
        escaped = client.encode("unicode_escape").decode("ascii").replace('"', '\\"')
        # The line begins with the peer's address, quoted.
        return f'"{escaped}"' + line[line.index('"', 1) + 1 :]

    return format


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

    def __init__(
        self,
        factory: EchoServerFactory,
        origins: OriginPolicy,
        proxies: ProxyTrust | None = None,
    ) -> None:
        super().__init__(factory)
        self._echo = factory
        self._origins = origins
        self._proxies = proxies

    def _client_address(self, request: server.Request) -> str:
        peer = request.getClientAddress()
        host = getattr(peer, "host", None) or str(peer)
        if self._proxies is None:
            return host
        return self._proxies.client_address(host, request)

    def _refuse(
        self,
        request: server.Request,
        code: int,
        phrase: bytes,
        body: str,
        client: str,
        reason: str,
    ) -> bytes:
        self._log.info("refused {client}: {reason}", client=client, reason=reason)
        # The client came to switch protocols, not to keep talking HTTP.
        request.setHeader(b"Connection", b"close")
        request.channel.persistent = False
        return _text(request, code, phrase, body)

    def render(self, request: server.Request) -> bytes | int:
        if request.postpath:
            # The resource is a leaf, so /socket/anything lands here too.
            return error_page(request, 404, "Not Found", "No such resource.")
        upgrade = request.getHeader(b"upgrade") or b""
        if b"websocket" not in upgrade.lower():
            self._echo.metrics.refusals.labels("not_websocket").inc()
            request.setHeader(b"Upgrade", b"websocket")
            return error_page(
                request,
                426,
                "Upgrade Required",
                "This is a WebSocket endpoint: connect with a WebSocket client "
                "(Upgrade: websocket), or try the echo console on the index page.",
            )
        client = self._client_address(request)
        problem = _not_an_upgrade(request)
        if problem is not None:
            self._echo.metrics.refusals.labels("bad_handshake").inc()
            return self._refuse(
                request, 400, b"Bad Request", problem + "\n", client, problem
            )
        origin = _header(request, b"origin")
        if not self._origins.allows(origin, _header(request, b"host")):
            self._echo.metrics.refusals.labels("origin").inc()
            return self._refuse(
                request,
                403,
                b"Forbidden",
                "Origin not allowed.\n",
                client,
                f"origin {origin!r} not allowed",
            )
        if self._echo.draining:
            self._echo.metrics.refusals.labels("shutting_down").inc()
            return self._unavailable(request, client, "shutting down")
        limit = self._echo.would_exceed(client)
        if limit is not None:
            self._echo.metrics.refusals.labels(limit.replace(" ", "_")).inc()
            return self._unavailable(request, client, limit)
        offers = request.requestHeaders.getRawHeaders(b"sec-websocket-extensions")
        if offers:
            # Declined, not refused: see wsecho.deflate.acceptable_offers.
            kept = acceptable_offers([v.decode("latin-1") for v in offers])
            if kept is None:
                request.requestHeaders.removeHeader(b"sec-websocket-extensions")
            else:
                request.requestHeaders.setRawHeaders(
                    b"sec-websocket-extensions", [kept.encode("latin-1")]
                )
        self._echo.next_client_address = client
        try:
            result: int = super().render(request)
        finally:
            self._echo.next_client_address = None
        protocol, self._echo.last_built = self._echo.last_built, None
        if isinstance(request.channel, _Channel):
            request.channel.upgraded_to = protocol
        return result

    def _unavailable(self, request: server.Request, client: str, reason: str) -> bytes:
        request.setHeader(b"Retry-After", b"5")
        return self._refuse(
            request,
            503,
            b"Service Unavailable",
            f"Not now: {reason}.\n",
            client,
            reason,
        )


def _not_an_upgrade(request: server.Request) -> str | None:
    """
    What makes an upgrade request one that twisted.web read but that RFC
    6455 4.2.1 refuses; L{None} if nothing does.
    """
    if request.clientproto != b"HTTP/1.1":
        # Autobahn would check, but WebSocketResource hands it the request
        # rewritten as HTTP/1.1.
        return "a WebSocket handshake needs HTTP/1.1"
    length = request.getHeader(b"content-length")
    if request.getHeader(b"transfer-encoding") is not None or (
        length is not None and length.strip() != b"0"
    ):
        # twisted.web has read the body, and WebSocketResource would pass it
        # on to the WebSocket as if the client had sent it as frames.
        return "a WebSocket handshake has no body"
    return None


class Health(Styled):
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
    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The absolute form (GET http://host/socket), which a server must
        # accept (RFC 9112 3.2.2): its authority is the host (3.3).
        if path[:1] != b"/" and b"://" in path:
            parts = urlsplit(path)
            if parts.scheme.lower() in (b"http", b"https") and parts.netloc:
                self.requestHeaders.setRawHeaders(b"host", [parts.netloc])
                path = parts.path or b"/"
                if parts.query:
                    path += b"?" + parts.query
        super().requestReceived(command, path, version)

    def render(self, resrc: Resource) -> None:
        self.setHeader(b"Server", SERVER_NAME)
        super().render(resrc)


class _Channel(http.HTTPChannel):
    """
    An HTTP connection with a deadline for each request: the request line,
    headers and body must all be in before it, however slowly they trickle
    in. The idle timeout restarts with every byte, so it alone lets a
    slowloris hold a connection for ever, one byte at a time. The deadline
    runs from the TCP connection, so it covers a TLS handshake too; a
    connection that sent nothing by then (no request, or no TLS handshake)
    is aborted.

    A connection we close after an answer is aborted if it is still open
    C{--close-handshake-timeout} seconds later: a client that does not read
    (or a TLS client that never sends close_notify) would keep it for ever.
    A client that pipelines requests without reading the answers is not
    read from while they wait (Twisted reads on), and what waits counts
    against the memory budget.
    """

    _log = Logger()
    site: Site
    _deadline: IDelayedCall | None = None
    _abort_timer: IDelayedCall | None = None
    _received = False
    # The WebSocket protocol that took this connection over, if one did.
    upgraded_to: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def _arm(self) -> None:
        if self.site.request_deadline and self._deadline is None:
            self._deadline = self.callLater(self.site.request_deadline, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport is None:  # taken over by a WebSocket
            return
        self.site.echo_factory.metrics.refusals.labels("request_timeout").inc()
        if not self._received:
            self._log.info(
                "{peer} sent no request in {timeout} s: aborted",
                peer=peer2str(self.transport),
                timeout=self.site.request_deadline,
            )
            cast(Any, self.transport).abortConnection()
            return
        self._log.info(
            "request from {peer} not complete after {timeout} s: closed",
            peer=peer2str(self.transport),
            timeout=self.site.request_deadline,
        )
        self._answer_and_close(b"408 Request Timeout")

    def lineLengthExceeded(self, line: bytes) -> None:
        # A request line or header over 16 KiB: LineReceiver would close
        # the connection without a word.
        self.site.echo_factory.metrics.refusals.labels("header_too_large").inc()
        self._answer_and_close(b"431 Request Header Fields Too Large")

    def _answer_and_close(self, status: bytes) -> None:
        self._disarm()
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nServer: " + SERVER_NAME + b"\r\n"
            b"Connection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.loseConnection()

    def loseConnection(self) -> None:
        super().loseConnection()
        timeout = self.site.close_timeout
        if timeout and self._abort_timer is None and self.transport is not None:
            self._abort_timer = self.callLater(timeout, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if self.transport is not None:
            self._log.info(
                "{peer} did not close within {timeout} s of our answer: aborted",
                peer=peer2str(self.transport),
                timeout=self.site.close_timeout,
            )
            cast(Any, self.transport).abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if not self._received and data[:2] == b"\x16\x03":
            # A TLS ClientHello (wss:// to a plain port; no HTTP method starts
            # so): it would wait for a line end until the deadline; the
            # client is better told now (its TLS fails on a plain answer).
            assert self.transport is not None
            self._log.info(
                "{peer} spoke TLS to a plain HTTP port: 400",
                peer=peer2str(self.transport),
            )
            self._received = True
            self.site.echo_factory.metrics.refusals.labels("bad_handshake").inc()
            self._answer_and_close(b"400 Bad Request")
            return
        self._received = True
        super().dataReceived(data)
        # Needed only for the bytes read with the upgrade request; kept, it
        # would hold the WebSocket protocol in this channel's cycles.
        self.upgraded_to = None

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self.upgraded_to is not None:
            # Bytes read together with the upgrade request: the client's
            # first frames, sent without waiting for our 101. twisted.web
            # would keep them for a next request that never comes.
            self.upgraded_to.dataReceived(data)
            return
        super().rawDataReceived(data)

    def requestDone(self, request: http.Request) -> None:
        if answers_unread(self):
            # The client is not reading our answers: read no more of its
            # requests until it has (Twisted reads on).
            pause_reading(self)
        # Armed first: requestDone goes on to parse a pipelined request.
        if self.persistent:
            self._arm()
        super().requestDone(request)

    def pauseProducing(self) -> None:
        super().pauseProducing()
        budget = self.site.echo_factory.budget
        if budget.limit:
            buffered = write_buffered(self.transport) - budget.held(self)
            if buffered > 0:
                budget.take(self, buffered)

    def resumeProducing(self) -> None:
        self.site.echo_factory.budget.give_all(self)
        super().resumeProducing()

    def evict(self) -> None:
        # What the budget needs is our unread answers: drop them with us.
        if self.transport is not None:
            self._log.info(
                "{peer}: answers not read, memory budget reached: aborted",
                peer=peer2str(self.transport),
            )
            cast(Any, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self.site.echo_factory.budget.give_all(self)
        super().connectionLost(reason)


class Site(server.Site):
    """
    The HTTP service, with the echo's factory at hand for shutting down.

    Its channels are plain HTTP/1.1: wsecho offers no HTTP/2 (WebSocket
    over HTTP/2 is another protocol, RFC 8441).
    """

    requestFactory = _Request
    protocol = _Channel  # type: ignore[assignment]
    # No "Starting factory <wsecho.web.Site object at 0x...>" lines.
    noisy = False
    _log = Logger()

    def __init__(
        self,
        resource: Resource,
        echo_factory: EchoServerFactory,
        request_deadline: float | None = None,
        close_timeout: float | None = None,
        proxies: ProxyTrust | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, **kwargs)
        self.echo_factory = echo_factory
        self.request_deadline = request_deadline
        self.close_timeout = close_timeout
        self._proxies = proxies
        self._format = kwargs.get("logFormatter") or http.combinedLogFormatter

    def log(self, request: http.Request) -> None:
        """
        The access log: twisted.web's combined line, as an event with the
        request's fields (for the JSON log), unless it goes to a file.
        """
        if self.logPath is not None:
            super().log(request)
            return
        peer = getattr(request.getClientAddress(), "host", "-")
        if self._proxies is not None:
            peer = self._proxies.client_address(peer, cast(server.Request, request))
        agent = request.getHeader(b"user-agent")
        line = self._format(http.datetimeToLogString(), request)
        # The line itself is the format (a field would repeat it in the
        # JSON log); its braces are the client's, not fields.
        self._log.info(
            line.replace("{", "{{").replace("}", "}}"),
            method=request.method.decode("latin-1"),
            path=printable(request.uri.decode("latin-1")),
            status=request.code,
            client=peer,
            user_agent=printable(agent.decode("latin-1")) if agent else None,
            bytes=request.sentLength,
        )

    def stopFactory(self) -> None:
        self.echo_factory.stop_timers()
        super().stopFactory()


def make_site(settings: EchoSettings) -> Site:
    """
    The whole HTTP service: the index at C{/}, the echo at C{/socket}, and
    the health checks at C{/healthz} and C{/readyz}.
    """
    factory = make_factory(settings)
    root = Root()
    root.putChild(
        b"socket",
        EchoResource(
            factory, OriginPolicy(settings.allowed_origins), settings.trusted_proxies
        ),
    )
    if settings.metrics:
        root.putChild(b"metrics", MetricsResource(factory.metrics))
    root.putChild(b"healthz", Health(factory, readiness=False))
    root.putChild(b"readyz", Health(factory, readiness=True))
    # twisted.web reads the upgrade request before Autobahn sees it, so the
    # opening-handshake timeout is also the deadline for a whole request,
    # which makes twisted.web's idle timeout (12 hours by default) useless.
    deadline = settings.open_handshake_timeout or None
    options: dict[str, Any] = {}
    if settings.trusted_proxies is not None:
        options["logFormatter"] = _access_log(settings.trusted_proxies)
    return Site(
        root,
        factory,
        request_deadline=deadline,
        close_timeout=settings.close_handshake_timeout or None,
        proxies=settings.trusted_proxies,
        timeout=None,
        **options,
    )
