"""
An echo connection's life after its handshake: the one log line that says
how it ended, its connection slot freed as soon as its WebSocket is closed,
the abort of a peer that keeps the socket open after that, and nothing of it
left behind once its TCP connection is lost.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsecho._compat import close_code_allowed, fail, forget_parser
from wsecho.daemon.logs import printable
from wsecho.wire.frames import valid_utf8

GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007


def close_frame_error(code: int | None, reason: bytes | None) -> tuple[int, str] | None:
    """
    What is wrong with a received close frame (RFC 6455 7.4.1 and 5.5.1):
    the close code to fail the connection with and why, or L{None}.
    """
    if code is not None and (
        code < 1000 or code >= 5000 or (code < 3000 and not close_code_allowed(code))
    ):
        return PROTOCOL_ERROR, f"invalid close code {code}"
    if reason and not valid_utf8(reason):
        return INVALID_PAYLOAD, "invalid close reason (non-UTF8 payload)"
    return None


if TYPE_CHECKING:
    from wsecho.ws.flow import Backpressure

    _Base = Backpressure
else:
    _Base = object


class Lifecycle(_Base):
    """
    The opening, closing and forgetting of an echo connection.
    """

    _log = Logger()
    opened = False
    _opened_at = 0.0
    client_address = "-"
    closeHandshakeTimeout: float
    # Aborts a connection we closed that its peer keeps open (TLS waits for
    # the peer's close_notify, which may never come).
    _abort_timer: IDelayedCall | None = None

    def drop_buffers(self) -> None:
        """
        Let go of what the connection holds for its client.
        """

    def onOpen(self) -> None:
        # Logged when the connection closes, in one line with the rest (a
        # log line costs a handshake a tenth of its time); --verbose logs
        # the opening too.
        self.opened = True
        self._opened_at = time.monotonic()

    def going_away(self, code: int = GOING_AWAY) -> None:
        """
        The server is shutting down: start the closing handshake with
        C{code} (1001, going away, or 1012, service restart), or drop a
        connection still in its opening handshake.
        """
        if self.state == self.STATE_OPEN:
            # sendClose() refuses 1001 and 1012, which it reserves for
            # endpoints.
            reason = b"server restarting" if code == 1012 else b"server shutting down"
            self.sendCloseFrame(code=code, reasonUtf8=reason, isReply=False)
        elif self.state == self.STATE_CONNECTING:
            self.dropConnection(abort=True)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        """
        A close frame that opens a closing handshake with a bad code or
        reason fails the connection, and the TCP connection is closed in
        order once our close frame is written. Autobahn would take the bad
        frame for the answer to its own close frame and abort: the client,
        writing its answer, would meet a reset instead.
        """
        if self.state == self.STATE_OPEN:
            error = close_frame_error(code, reasonRaw)
            if error is not None:
                fail(self, *error)
                self.dropConnection(abort=False)
                return True
        # Autobahn's annotations say int and bytes; it passes None for a
        # close frame without a code.
        return super().onCloseFrame(code, reasonRaw)  # type: ignore[arg-type]

    def described(self) -> dict[str, Any]:
        """
        What the log says of a connection: where from, and what was agreed.
        """
        return {
            "peer": self.peer,
            "client": self.client_address,
            "origin": printable(self.http_headers.get("origin", "-")),
            "subprotocol": self.websocket_protocol_in_use or "-",
            "extensions": ",".join(
                e.EXTENSION_NAME for e in self.websocket_extensions_in_use
            )
            or "-",
        }

    def close_code(self) -> int | None:
        """
        The close code of whoever closed first (L{None}: dropped without a
        close frame), as the log and /metrics give it.
        """
        return self.localCloseCode if self.closedByMe else self.remoteCloseCode

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened:
            self._log.info(
                "handshake failed {peer}: {reason}",
                peer=self.peer,
                client=self.client_address,
                reason=self.wasNotCleanReason,
            )
            return
        # The seed printed the peer's close code and reason; so do we: the
        # code and reason of whoever closed first (the server's own when it
        # failed the connection, as /metrics counts it), whether the closing
        # handshake completed, and what went through.
        stats = self.trafficStats
        code = self.close_code()
        if self.closedByMe:
            reason = (self.localCloseReason or b"").decode("utf-8", "replace")
        elif code is None:
            code = 1006  # no close frame: RFC 6455 7.1.5
        duration = time.monotonic() - self._opened_at
        described = self.described()
        reason = reason or ""
        # The server ended it: it sent the first close frame, or dropped the
        # connection without a clean close (a timeout, the budget).
        closed_by = (
            "server"
            if self.closedByMe or (self.droppedByMe and not wasClean)
            else "client"
        )
        received, sent = stats.incomingOctetsWireLevel, stats.outgoingOctetsWireLevel
        messages_received = stats.incomingWebSocketMessages
        messages_sent = stats.outgoingWebSocketMessages
        # The line is written here, once: twisted.logger's formatting of a
        # format with fifteen fields cost a handshake a tenth of its time.
        # The fields go in the event too, for the JSON log.
        summary = (
            f"client={described['client']} code={code} reason={reason!r} "
            f"clean={wasClean} closed_by={closed_by} duration={duration * 1000:.0f}ms "
            f"messages={messages_received}/{messages_sent} "
            f"wire_bytes={received}/{sent} origin={described['origin']} "
            f"subprotocol={described['subprotocol']} "
            f"extensions={described['extensions']}"
        )
        self._log.info(
            "close {peer} {summary}",
            **described,
            summary=summary,
            code=code,
            reason=reason,
            clean=wasClean,
            closed_by=closed_by,
            duration=duration,
            duration_ms=duration * 1000,
            received=received,
            sent=sent,
            messages_received=messages_received,
            messages_sent=messages_sent,
        )

    def dropConnection(self, abort: bool = False) -> None:
        """
        The WebSocket is closed (or failed): its connection slot is free
        and its pings stop now, not when the peer closes TCP, which a TLS
        peer may never do (Twisted waits for its close_notify). A connection
        still open C{--close-handshake-timeout} seconds later is aborted.
        """
        closing = self.state != self.STATE_CLOSED
        super().dropConnection(abort)
        if not closing:
            return
        for name in ("autoPingPendingCall", "autoPingTimeoutCall"):
            call = getattr(self, name)
            if call is not None:
                call.cancel()
                setattr(self, name, None)
        self.factory.closed(self)
        timeout = self.closeHandshakeTimeout
        if not abort and timeout and self._abort_timer is None:
            self._abort_timer = self.factory.reactor.callLater(timeout, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if self.transport is not None:
            self._log.info(
                "{peer}: connection still open {timeout} s after the WebSocket "
                "closed: aborted",
                peer=self.peer,
                client=self.client_address,
                timeout=self.closeHandshakeTimeout,
            )
            cast(Any, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            # Whatever onClose did: a connection not forgotten would hold a
            # slot, and a shutdown, for ever.
            self._forget()

    def _forget(self) -> None:
        self.stopProducing()
        self.factory.forget(self)
        # Autobahn leaves the closing-handshake timer running when the peer
        # drops the connection first; it would hold this protocol for
        # --close-handshake-timeout seconds more.
        for name in ("closeHandshakeTimeoutCall", "_abort_timer"):
            call = getattr(self, name)
            if call is not None:  # each is None once it has fired
                call.cancel()
                setattr(self, name, None)
        # Nothing of a closed connection stays: its buffers and zlib
        # objects go now, and the references that would keep this protocol
        # in a cycle until a full garbage collection go with them (the
        # transport's, the sender's, the Deferreds that hold it).
        self.drop_buffers()
        forget_parser(self)
        self.is_closed = self.is_open = None
        self.transport = None
