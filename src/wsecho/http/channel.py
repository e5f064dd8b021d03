"""
The HTTP side of a connection, hardened: deadlines for a whole request and
for a client to close after our answer, the absolute-form target, the names
served on a loopback address (DNS rebinding), pipelined requests bounded by
the memory budget, and the site that holds them with its access log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from autobahn.twisted.util import peer2str
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

from wsecho._compat.h2 import connection_of
from wsecho._compat.twisted import (
    answers_unread,
    pause_reading,
    take_over,
    write_buffered,
)
from wsecho.http.h2 import H2Channel, speaks_h2, undecided
from wsecho.http.pages import Health, Misdirected
from wsecho.http.policy import ProxyTrust, authority
from wsecho.text import printable
from wsecho.ws import costs

if TYPE_CHECKING:
    from wsecho.http.site import Site

# Sent on every HTTP response instead of "TwistedWeb/<version>": version
# numbers in a banner only help whoever is looking for a vulnerable one.
SERVER_NAME = b"wsecho"


def access_log(proxies: ProxyTrust) -> Any:
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


def _name(value: str) -> str | None:
    found = authority(value)
    return found[0] if found is not None else None


class Request(server.Request):
    # An absolute-form target whose authority is not the Host header's.
    _disagrees = False

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # The absolute form (GET http://host/socket), which a server must
        # accept (RFC 9112 3.2.2): its authority is the host (3.3).
        if path[:1] != b"/" and b"://" in path:
            parts = urlsplit(path)
            if parts.scheme.lower() in (b"http", b"https") and parts.netloc:
                given = self.requestHeaders.getRawHeaders(b"host")
                if given is not None:
                    # Where the Host is checked, both must name the same
                    # host, and one served (a port left out is no matter).
                    names = {_name(v.decode("latin-1")) for v in [parts.netloc, *given]}
                    self._disagrees = len(names) != 1 or None in names
                self.requestHeaders.setRawHeaders(b"host", [parts.netloc])
                path = parts.path or b"/"
                if parts.query:
                    path += b"?" + parts.query
        super().requestReceived(command, path, version)

    def render(self, resrc: Resource) -> None:
        self.setHeader(b"Server", SERVER_NAME)
        # Every path but the health checks, which a load balancer asks for
        # by names of its own: a rebinding page could read /metrics too.
        if not isinstance(resrc, Health) and not self._host_served():
            resrc = Misdirected()
        super().render(resrc)

    def _host_served(self) -> bool:
        # Over HTTP/2, the connection's (the :authority is the Host).
        channel = connection_of(self.channel) or self.channel
        if not isinstance(channel, (Channel, H2Channel)) or not channel.checks_host:
            return True
        hosts = self.requestHeaders.getRawHeaders(b"host", [])
        return (
            not self._disagrees
            and len(hosts) <= 1
            and channel.serves(hosts[0].decode("latin-1") if hosts else None)
        )

    def __repr__(self) -> str:
        # twisted.web's fails on a target that is not ASCII, and takes the
        # log event that names the request with it.
        return f"<Request {self.method!r} {printable(repr(self.uri))}>"


class Channel(http.HTTPChannel):
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

    The connection's fixed cost (its socket, and TLS's state on an ssl:
    listener) counts against the memory budget from the moment it is
    accepted: one the budget cannot afford is closed at once, before it
    costs more. The echo protocol that takes the connection over adopts it.
    """

    _log = Logger()
    site: Site
    _deadline: IDelayedCall | None = None
    _abort_timer: IDelayedCall | None = None
    _received = False
    # A first read too short to tell HTTP/2's preface (wsecho.http.h2.undecided).
    _start = b""
    # The connection's fixed cost on the budget (see wsecho.ws.costs); what
    # its client sent, and when, as the budget ranks holders.
    fixed_cost = 0
    sent = 0
    progressed_at = 0.0
    # The WebSocket protocol that took this connection over, if one did.
    upgraded_to: Any = None
    # Whether this connection's requests have their Host checked: it came
    # to a loopback address, or --allowed-host names the hosts served.
    checks_host = False

    def connectionMade(self) -> None:
        super().connectionMade()
        assert self.transport is not None
        local = getattr(self.transport.getHost(), "host", None)
        self.checks_host = self.site.hosts.checks(local)
        if not self._admit():
            return
        self._arm()

    def serves(self, host: str | None) -> bool:
        """
        Whether a request on this connection with C{host} (its one Host
        header) is served: see L{wsecho.http.policy.HostPolicy}.
        """
        return not self.checks_host or self.site.hosts.serves(host)

    def _admit(self) -> bool:
        context = self.site.context
        budget = context.budget
        if not budget.limit:
            return True
        cost = costs.TCP
        if ISSLTransport.providedBy(self.transport):
            cost += costs.TLS_HANDSHAKE
        if budget.admit(self, cost, push=True):
            self.fixed_cost = cost
            self.progressed_at = budget.now()
            context.admitted[self.transport] = self
            return True
        assert self.transport is not None
        self._log.info(
            "{peer}: memory budget of {budget} bytes reached: connection refused",
            peer=peer2str(self.transport),
            budget=budget.limit,
        )
        context.metrics.refusals.labels("memory_budget").inc()
        cast(Any, self.transport).abortConnection()
        return False

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
        self.site.context.metrics.refusals.labels("request_timeout").inc()
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
        self.site.context.metrics.refusals.labels("header_too_large").inc()
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
            self.site.context.metrics.refusals.labels("bad_handshake").inc()
            self._answer_and_close(b"400 Bad Request")
            return
        if not self._received and self.site.h2_connect is not None:
            data, self._start = self._start + data, b""
            if undecided(self.transport, data):
                self._start = data
                return
        first, self._received = not self._received, True
        self.sent += len(data)
        self.progressed_at = self.site.context.clock.seconds()
        if (
            first
            and self.site.h2_connect is not None
            and speaks_h2(self.transport, data)
        ):
            self._to_h2(data)
            return
        upgrade = self.site.upgrade_at_once
        if first and upgrade is not None and upgrade(self, data):
            # A whole upgrade request in the connection's first read (as
            # every client sends it), handed to Autobahn as read, without
            # twisted.web's request; anything else is twisted.web's.
            self._disarm()
            return
        super().dataReceived(data)
        # Needed only for the bytes read with the upgrade request; kept, it
        # would hold the WebSocket protocol in this channel's cycles.
        self.upgraded_to = None

    def _to_h2(self, data: bytes) -> None:
        """
        Hand the connection to an L{H2Channel}, as twisted.web's own
        C{_GenericHTTPChannelProtocol} does after ALPN: it becomes the
        transport's producer, and its deadline is its own.
        """
        self._disarm()
        transport: Any = self.transport
        assert self.site.h2_connect is not None
        h2 = H2Channel(self.site, self.checks_host, self.site.h2_connect)
        transport.unregisterProducer()
        take_over(self, h2)
        transport.registerProducer(h2, True)
        h2.dataReceived(data)

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
        budget = self.site.context.budget
        if budget.limit:
            buffered = write_buffered(self.transport) - budget.held(self)
            if buffered > 0:
                budget.take(self, buffered)

    def resumeProducing(self) -> None:
        self.site.context.budget.give_all(self)
        super().resumeProducing()

    def hand_over(self) -> int:
        """
        The connection becomes a WebSocket, whose account takes over what
        this channel holds on the budget: its fixed cost, returned.
        """
        cost, self.fixed_cost = self.fixed_cost, 0
        return cost

    def evict(self) -> None:
        # What the budget needs is what we hold (unread answers, the TLS
        # state of a handshake that does not progress): drop it with us.
        self.fixed_cost = 0
        if self.transport is not None:
            self.site.context.admitted.pop(self.transport, None)
            self._log.info(
                "{peer}: memory budget reached: aborted",
                peer=peer2str(self.transport),
            )
            cast(Any, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        context = self.site.context
        if self.transport is not None:
            context.admitted.pop(self.transport, None)
        if self.fixed_cost:
            context.budget.give(self, self.fixed_cost, fixed=True)
            self.fixed_cost = 0
        context.budget.give_all(self)
        super().connectionLost(reason)
