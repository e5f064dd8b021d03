"""
HTTP/2 (RFC 9113) on every listener: ALPN C{h2} over TLS, the connection
preface on a plain port (prior knowledge; C{Upgrade: h2c} is not
answered). Pages are twisted.web's over Twisted's HTTP/2 connection; an
extended CONNECT to C{/socket} (RFC 8441) is a WebSocket
(L{wsecho.http.upgrade.EchoResource.connect_h2}).

L{H2Channel} adds what HTTP/1.1's channel has: the names served (the Host
check reads C{:authority}) and a deadline: a connection that carries no
WebSocket must have had a request answered within C{--open-handshake-timeout}
seconds of its start or of its last answer, or it is closed with a GOAWAY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsecho._compat.h2 import (
    PREFACE,
    ErrorCodes,
    H2Connection,
    negotiated_h2,
)
from wsecho._compat.h2stream import StreamTransport

if TYPE_CHECKING:
    from wsecho.http.site import Site

# What a client may open at once on one connection, each stream's window
# (what a WebSocket whose client does not read its echoes may have sent
# on top of them), and the size of a request's headers, decoded.
MAX_STREAMS = 100
STREAM_WINDOW = 64 * 1024
MAX_HEADER_LIST = 16 * 1024


# What of the preface tells it from any HTTP/1.1 request line.
_TELLS = PREFACE[:14]


def speaks_h2(transport: Any, data: bytes) -> bool:
    """
    Whether a connection whose first read is C{data} speaks HTTP/2: ALPN
    chose it, or it begins with the connection preface.
    """
    return negotiated_h2(transport) or data.startswith(_TELLS)


def undecided(transport: Any, data: bytes) -> bool:
    """
    Whether a connection's first bytes, C{data}, are too few to say if it
    speaks HTTP/2 (a preface split over reads): they wait for more.
    """
    return (
        len(data) < len(_TELLS)
        and PREFACE.startswith(data)
        and not negotiated_h2(transport)
    )


class H2Channel(H2Connection):
    """
    An HTTP/2 connection of wsecho's site.
    """

    _log = Logger()
    _deadline: IDelayedCall | None = None

    def __init__(
        self,
        site: Site,
        checks_host: bool,
        connect: Callable[[StreamTransport, list[tuple[bytes, bytes]]], None],
    ) -> None:
        def opened(stream: StreamTransport, headers: list[tuple[bytes, bytes]]) -> None:
            # A CONNECT keeps the connection (the WebSocket has its own
            # timers; a refusal's end arms the deadline again).
            self._disarm()
            connect(stream, headers)

        super().__init__(
            site.context.clock,
            opened,
            max_streams=MAX_STREAMS,
            max_header_list=MAX_HEADER_LIST,
            window=STREAM_WINDOW,
        )
        # What Twisted's streams read (their requests' site).
        self.site = site  # type: ignore[assignment]
        self.factory = site  # type: ignore[assignment]
        self.requestFactory = site.requestFactory
        self._site = site
        self.checks_host = checks_host
        self.close_timeout = site.close_timeout
        self.stream_done = self._stream_done

    def serves(self, host: str | None) -> bool:
        """
        Whether a request with C{host} (its C{:authority}) is served: see
        L{wsecho.http.policy.HostPolicy}.
        """
        return not self.checks_host or self._site.hosts.serves(host)

    def connectionMade(self) -> None:
        super().connectionMade()
        self._site.h2_connections.add(self)
        self._arm()

    _going_away = False

    def going_away(self) -> None:
        """
        End with a GOAWAY (NO_ERROR, RFC 9113 6.8) once no stream is left:
        now, or when the last one is done. h2 sends nothing after its GOAWAY,
        so the streams open (WebSockets in their closing handshakes) finish
        first; the daemon's drain bounds how long that takes.
        """
        self._going_away = True
        self._gone()

    def _gone(self) -> None:
        if self.transport is not None and not self.streams:
            self.refuse(ErrorCodes.NO_ERROR, "the server is shutting down")

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _stream_done(self, stream_id: int) -> int:
        if self.transport is not None and self._going_away:
            if not self.streams:
                # A reactor turn later: this runs inside Twisted's loops,
                # which go on over the connection's state. The daemon waits
                # for the connection to be closed (Site.h2_closed).
                self._site.context.clock.callLater(0, self._gone)
        elif self.transport is not None and not self.websockets:
            self._arm(again=True)
        return stream_id

    def _arm(self, again: bool = False) -> None:
        timeout = self._site.request_deadline
        if not timeout:
            return
        if self._deadline is not None:
            if not again:
                return
            self._deadline.cancel()
        self._deadline = self._site.context.clock.callLater(timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport is None or self.websockets:
            return
        self._site.context.metrics.refusals.labels("request_timeout").inc()
        self.refuse(
            ErrorCodes.NO_ERROR,
            f"idle, no request answered in {self._site.request_deadline} s",
        )

    def connectionLost(
        self, reason: Failure = connectionDone, *args: Any, **kwargs: Any
    ) -> None:
        self._disarm()
        super().connectionLost(reason, *args, **kwargs)
        if (args[0] if args else kwargs.get("_cancelTimeouts", True)) is True:
            # The TCP connection is gone (not only let go of by _terminate,
            # whose loseConnection still sends what is buffered).
            self._site.h2_lost(self)
