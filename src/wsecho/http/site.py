"""
The HTTP service: L{Site}, whose channels are wsecho's hardened HTTP/1.1
channels, and L{make_site}, which puts the index, the echo at C{/socket},
the health checks and the metrics together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.resource import Resource

from wsecho._compat.h2 import HTTP2
from wsecho.http.channel import Channel, Request, access_log
from wsecho.http.metrics import MetricsResource
from wsecho.http.pages import Health, Root
from wsecho.http.policy import HostPolicy, OriginPolicy, ProxyTrust
from wsecho.http.upgrade import EchoResource
from wsecho.settings import EchoSettings
from wsecho.text import printable
from wsecho.ws.context import EchoContext
from wsecho.ws.factory import make_factory


class Site(server.Site):
    """
    The HTTP service, with the echo connections' context at hand.

    Its channels are HTTP/1.1 ones that become HTTP/2 connections
    (L{wsecho.http.h2}) when the client speaks it, unless C{h2_connect}
    (what takes an extended CONNECT) is L{None}.
    """

    requestFactory = Request
    protocol = Channel  # type: ignore[assignment]
    # No "Starting factory <wsecho.http.site.Site object at 0x...>" lines.
    noisy = False
    _log = Logger()

    def __init__(
        self,
        resource: Resource,
        context: EchoContext,
        request_deadline: float | None = None,
        close_timeout: float | None = None,
        proxies: ProxyTrust | None = None,
        upgrade_at_once: Callable[[Channel, bytes], bool] | None = None,
        hosts: HostPolicy | None = None,
        h2_connect: Callable[[Any, list[tuple[bytes, bytes]]], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, **kwargs)
        self.context = context
        # The names served (against DNS rebinding): wsecho.http.policy.
        self.hosts = hosts or HostPolicy()
        self.request_deadline = request_deadline
        self.close_timeout = close_timeout
        self._proxies = proxies
        # Takes a channel's first read if it is a whole upgrade request it
        # can answer at once (wsecho.http.site.EchoResource.upgrade_at_once).
        self.upgrade_at_once = upgrade_at_once
        # HTTP/2 on: EchoResource.connect_h2.
        self.h2_connect = h2_connect
        # The HTTP/2 connections open (wsecho.http.h2.H2Channel), told when
        # the daemon shuts down.
        self.h2_connections: set[Any] = set()
        self._h2_waiting: list[Deferred[None]] = []
        self._format = kwargs.get("logFormatter") or http.combinedLogFormatter

    def going_away(self) -> None:
        """
        The daemon shuts down: each HTTP/2 connection ends with a GOAWAY
        (NO_ERROR) once its streams are done (its WebSockets are closed
        with the shutdown's close code meanwhile).
        """
        for connection in list(self.h2_connections):
            connection.going_away()

    def h2_closed(self, timeout: float, clock: Any) -> Deferred[None]:
        """
        Fire once every HTTP/2 connection is closed (its GOAWAY written and
        sent, which a reactor that stops would not wait for), aborting those
        still open after C{timeout} seconds.
        """
        if not self.h2_connections:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._h2_waiting.append(done)

        def abort_the_rest(result: object, timeout: float) -> None:
            self._h2_waiting.remove(done)
            for connection in list(self.h2_connections):
                if connection.transport is not None:
                    connection.transport.abortConnection()

        return done.addTimeout(timeout, clock, onTimeoutCancel=abort_the_rest)

    def h2_lost(self, connection: Any) -> None:
        """
        An HTTP/2 connection is closed.
        """
        self.h2_connections.discard(connection)
        if self._h2_waiting and not self.h2_connections:
            # A reactor turn later: this runs in the connection's own loss.
            self.context.clock.callLater(0, self._h2_all_closed)

    def _h2_all_closed(self) -> None:
        waiting, self._h2_waiting = self._h2_waiting, []
        for done in waiting:
            done.callback(None)

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
        self.context.stop()
        super().stopFactory()


def make_site(settings: EchoSettings) -> Site:
    """
    The whole HTTP service: the index at C{/}, the echo at C{/socket}, and
    the health checks at C{/healthz} and C{/readyz}.
    """
    context = EchoContext(settings)
    factory = make_factory(settings, context)
    root = Root()
    echo = EchoResource(
        factory, OriginPolicy(settings.allowed_origins), settings.trusted_proxies
    )
    root.putChild(b"socket", echo)
    if settings.metrics:
        root.putChild(b"metrics", MetricsResource(context.metrics, context.registry))
    root.putChild(b"healthz", Health(context.registry, readiness=False))
    root.putChild(b"readyz", Health(context.registry, readiness=True))
    # twisted.web reads the upgrade request before Autobahn sees it, so the
    # opening-handshake timeout is also the deadline for a whole request,
    # which makes twisted.web's idle timeout (12 hours by default) useless.
    deadline = settings.open_handshake_timeout or None
    options: dict[str, Any] = {}
    if settings.trusted_proxies is not None:
        options["logFormatter"] = access_log(settings.trusted_proxies)
    return Site(
        root,
        context,
        request_deadline=deadline,
        close_timeout=settings.close_handshake_timeout or None,
        proxies=settings.trusted_proxies,
        upgrade_at_once=echo.upgrade_at_once,
        hosts=HostPolicy(settings.allowed_hosts),
        h2_connect=echo.connect_h2 if settings.http2 and HTTP2 else None,
        timeout=None,
        **options,
    )
