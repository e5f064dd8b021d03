"""
The echo itself: an Autobahn server protocol that sends every message back
with its type, and the factory that holds its protocol options.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._compat import allow_close_code, can_send_now, send_now, write_buffered
from .budget import DEFAULT_BUDGET, MemoryBudget, MiB
from .connections import EchoServerFactory
from .deflate import accept_deflate
from .frames import scan
from .logs import printable

# How many chunks of a message are kept apart before they are folded into
# one buffer (see EchoServerProtocol.onMessageFrame).
FOLD_CHUNKS = 64

# How much of a message --verbose shows.
VERBOSE_PREVIEW = 120

# How much is read from a socket at a time, and how much may wait in a
# connection's write buffer before the echo stops reading from its client.
READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class EchoSettings:
    """
    What an echo endpoint is configured with; L{wsecho.tap.Options} fills it.
    """

    max_message_size: int = 16 * MiB
    max_frame_size: int = 16 * MiB
    compression: bool = True
    subprotocols: Sequence[str] = ()
    open_handshake_timeout: float = 10.0
    close_handshake_timeout: float = 5.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    verbose: bool = False
    allowed_origins: Sequence[str] = ()
    slow_client_timeout: float = 60.0
    max_connections: int = 10_000
    max_connections_per_ip: int = 0
    trusted_proxies: Any = None  # a wsecho.web.ProxyTrust, or None
    metrics: bool = True
    memory_budget: int = DEFAULT_BUDGET


# Close codes of our own making.
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
# Registered with IANA (bad gateway), and valid in a close frame; Autobahn's
# list ends at 1013 and fails a peer that sends it with 1002.
BAD_GATEWAY = 1014
allow_close_code(BAD_GATEWAY)


@implementer(IPushProducer)
class EchoServerProtocol(WebSocketServerProtocol):
    """
    Send every message back as it came: text as text, binary as binary.

    It is also the producer for its own transport: an echo writes as much
    as it reads, so a client that sends without reading would fill the
    server's memory with its echoes. When the transport's write buffer
    passes its high-water mark (Twisted's C{bufferSize}, which we
    set to READ_SIZE) the
    transport pauses us and we stop reading from the socket; once the buffer
    has drained it resumes us and we read again. The kernel's buffers then
    push back on the client. A client still paused after the slow-client
    timeout is closed with 1008.
    """

    # Autobahn owns C{.log} on its protocols.
    _log = Logger()
    _opened = False
    _opened_at = 0.0
    _slow_timer: IDelayedCall | None = None
    _began = 0.0
    # The client's address as logged and counted for the per-address
    # limit: the peer's, or the one a trusted proxy forwarded.
    client_address = "-"
    # Whether messages are counted in the metrics (not with --no-metrics).
    counted = True
    _tally: Any = None
    _fast_limit = 0
    # Autobahn's, set from the factory.
    logOctets: bool
    closeHandshakeTimeout: float
    # The start of a frame the fast path waits to have whole.
    _pending: list[bytes] | None = None
    _pending_size = 0
    # How many bytes _pending must have before it is looked at again.
    _need = 0
    # Bytes still to come of a frame dropped for the memory budget.
    _skip = 0
    _write_echo: Callable[[bytes], None] | None = None
    # The process's memory budget, and what this connection holds of it.
    _budget: MemoryBudget | None = None
    _held_message = 0
    _held_write = 0
    # Paused by the transport: the client is not reading its echoes.
    _paused = False
    # Aborts a connection we closed that its peer keeps open (TLS waits for
    # the peer's close_notify, which may never come).
    _abort_timer: IDelayedCall | None = None

    def perMessageCompressionAccept(
        self, offers: Sequence[Any]
    ) -> PerMessageDeflateOfferAccept | None:
        # A method, so that it sees the request's header (Autobahn would
        # copy the factory's function over it otherwise).
        accept = self.factory.accept_deflate
        if accept is None:
            return None
        header = self.http_headers.get("sec-websocket-extensions")
        return cast(PerMessageDeflateOfferAccept | None, accept(offers, header))

    def onConnect(self, request: ConnectionRequest) -> str | None:
        # The first of the client's offers we speak, in the client's order of
        # preference; a client that offers nothing (or nothing we know) still
        # gets a connection without a subprotocol.
        for protocol in request.protocols:
            if protocol in self.factory.subprotocols:
                return protocol  # type: ignore[no-any-return]
        return None

    def _connectionMade(self) -> None:
        # Autobahn copies the factory's options onto each new protocol, then
        # pretty-prints them all for a debug message that is built whether
        # debug logging is on or not: a quarter of a handshake's time. Copy
        # them here, and leave Autobahn nothing to copy or print.
        factory = self.factory
        for name in self.CONFIG_ATTRS:
            if not hasattr(self, name):
                setattr(self, name, getattr(factory, name))
        cast(Any, self).CONFIG_ATTRS = ()
        try:
            super()._connectionMade()
        finally:
            del cast(Any, self).CONFIG_ATTRS

    def connectionMade(self) -> None:
        super().connectionMade()
        # twisted.web's HTTPChannel registered itself as the transport's
        # producer and stays registered after Autobahn takes the transport
        # over, but it pauses nothing while a request is in progress (the
        # upgrade request never ends). We take its place.
        transport: Any = self.transport
        transport.unregisterProducer()
        transport.registerProducer(self, True)
        self.factory.connected(self)
        # Twisted reads 64 KiB at a time: a 64 KiB message then takes two
        # reads and two passes here. asyncio reads 256 KiB; so do we. It is
        # also the write buffer's high-water mark (see the class docstring).
        transport.bufferSize = READ_SIZE
        if can_send_now(transport):
            self._write_echo = lambda data: send_now(transport, data)
        else:
            self._write_echo = transport.write
        self._tally = self.factory.metrics.echoes if self.counted else None
        # The largest frame the fast path takes; Autobahn answers larger ones.
        factory = self.factory
        if factory.budget.limit:
            self._budget = factory.budget
        self._fast_limit = min(
            factory.max_message_size, factory.max_frame_size or factory.max_message_size
        )

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        # What Autobahn writes itself (the handshake's answer, control
        # frames, messages the fast path leaves) goes out at once too.
        if (
            sync
            or chopsize
            or self.send_queue
            or self.logOctets
            or not self._write_echo
        ):
            super().sendData(data, sync, chopsize)
            return
        self._write_echo(data)
        if self._paused:
            self._hold_write()
        stats = self.trafficStats
        if self.state == self.STATE_OPEN:
            stats.outgoingOctetsWireLevel += len(data)
        elif self.state == self.STATE_CONNECTING:
            stats.preopenOutgoingOctetsWireLevel += len(data)

    def pauseProducing(self) -> None:
        # TCP transports stop reading; TLS passes it on to the TCP one.
        self._paused = True
        cast(Any, self.transport).pauseProducing()
        if self._budget is not None:
            self._hold_write()
        timeout = self.factory.slow_client_timeout
        if timeout and self._slow_timer is None:
            self._slow_timer = self.factory.reactor.callLater(timeout, self._too_slow)

    def resumeProducing(self) -> None:
        # The write buffer is empty (Twisted resumes its producer then).
        self._paused = False
        if self._held_write:
            self._release(self._held_write)
            self._held_write = 0
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        cast(Any, self.transport).resumeProducing()

    def stopProducing(self) -> None:
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None

    def _too_slow(self) -> None:
        self._slow_timer = None
        self._log.info(
            "closing {client}: it did not read its echoes for {timeout} s",
            client=self.client_address,
            timeout=self.factory.slow_client_timeout,
        )
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(
                code=POLICY_VIOLATION, reasonUtf8=b"client too slow", isReply=False
            )
            # Read again, to see the client's close frame should it catch
            # up; messages after our close frame are not echoed.
            cast(Any, self.transport).resumeProducing()
        else:
            self.dropConnection(abort=True)

    def going_away(self) -> None:
        """
        The server is shutting down: start the closing handshake with 1001
        (going away), or drop a connection still in its opening handshake.
        """
        if self.state == self.STATE_OPEN:
            # sendClose() refuses 1001, which is reserved for endpoints.
            self.sendCloseFrame(
                code=1001, reasonUtf8=b"server shutting down", isReply=False
            )
        elif self.state == self.STATE_CONNECTING:
            self.dropConnection(abort=True)

    def onOpen(self) -> None:
        # Logged when the connection closes, in one line with the rest (a
        # log line costs a handshake a tenth of its time); --verbose logs
        # the opening too.
        self._opened = True
        self._opened_at = time.monotonic()

    def _described(self) -> dict[str, Any]:
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

    def onMessageFrame(self, payload: Any) -> None:  # a frame's chunks
        # Autobahn keeps a message as a list of its frames' chunks, some
        # 40 bytes each on top of their payload even when empty: a message
        # sent as millions of tiny fragments would take many times its size
        # (the size limit counts payload only). Past a few chunks, fold them
        # into one buffer, so that memory follows the payload.
        if self.failedByMe:
            return
        chunks: list[Any] = self.message_data
        chunks.extend(payload)
        if len(chunks) > FOLD_CHUNKS:
            head = chunks[0]
            if not isinstance(head, bytearray):
                head = bytearray(head)
            for chunk in chunks[1:]:
                head += chunk
            chunks[:] = [head]

    def onMessageBegin(self, isBinary: bool) -> None:
        self._began = time.perf_counter()
        super().onMessageBegin(isBinary)

    def onMessageEnd(self) -> None:
        super().onMessageEnd()
        # The message has been echoed (or refused): it is the write buffer's
        # now, counted there if the client does not read it.
        if self._held_message:
            self._release(self._held_message)
            self._held_message = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.echo(payload, isBinary)
        if self.state != self.STATE_OPEN:
            return  # refused, or came after our close frame: not echoed
        tally = self.factory.metrics.echoes
        tally.message(isBinary, len(payload))
        tally.latency(time.perf_counter() - self._began)

    def dataReceived(self, data: bytes) -> None:
        """
        Echo the whole single-frame messages at the start of C{data} here
        (L{wsecho.frames.scan}), and hand the rest to Autobahn.

        Most messages are a single frame, and Autobahn's frame machinery (a
        header object, a masker object, a UTF-8 validator object, eight
        callbacks and their debug logging) costs a 32-byte echo two thirds
        of its time. The fast path runs on an open connection without
        permessage-deflate, between messages.

        A frame of ours cut across reads is kept until it is whole (bounded
        by the size limit and the memory budget) and looked at again only
        once it is: a 16 MiB frame dripped in 1 KiB reads costs one pass,
        not sixteen thousand.
        """
        if self._skip:
            # The rest of a frame whose connection we closed for the budget.
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data, self._skip = data[self._skip :], 0
        pending = self._pending
        if pending is not None:
            pending.append(data)
            self._pending_size += len(data)
            if not self._hold(len(data)):
                return
            if self._pending_size < self._need:
                return
            self._pending = None
            self._release(self._pending_size)
            # Joined once, when whole: a bytearray grown read by read would
            # be reallocated and over-allocated on the way.
            data = b"".join(pending)
        if (
            self.state != self.STATE_OPEN
            or self.data
            or self.current_frame is not None
            or self.inside_message
            or self._perMessageCompress is not None
        ):
            if self.state != self.STATE_CLOSED:
                # Closed, Autobahn would keep what comes for ever.
                self._dataReceived(data)
            return
        began = time.perf_counter()
        replies, at, need, count = scan(data, self._fast_limit, self._tally)
        if replies:
            reply = b"".join(replies)
            self._write_echo(reply)
            if self._paused:
                self._hold_write()
            stats = self.trafficStats
            stats.incomingWebSocketMessages += count
            stats.outgoingOctetsWireLevel += len(reply)
            stats.outgoingWebSocketMessages += count
            if self._tally is not None and count:
                self._tally.latency(time.perf_counter() - began, count)
        if at:
            self.trafficStats.incomingOctetsWireLevel += at
            if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()
        if at < len(data):
            rest = data[at:] if at else data
            if need:
                self._need = need
                self._pending = [rest]
                self._pending_size = len(rest)
                self._hold(len(rest))
            else:
                self._dataReceived(rest)

    # The memory budget (see wsecho.budget): what this connection holds of
    # it is what it waits to have whole (a frame, a message) and what its
    # client leaves unread in the write buffer.

    def _hold(self, size: int) -> bool:
        """
        Count C{size} more bytes held; L{False} if the budget closed this
        connection for them.
        """
        budget = self._budget
        return budget is None or budget.take(self, size)

    def _release(self, size: int) -> None:
        if self._budget is not None:
            self._budget.give(self, size)

    def _hold_write(self) -> None:
        """
        Echoes wait in the write buffer (we are paused): count what is
        there until it has drained.
        """
        buffered = write_buffered(self.transport)
        if buffered > self._held_write:
            more, self._held_write = buffered - self._held_write, buffered
            self._hold(more)

    def evict(self) -> None:
        """
        The memory budget needs what this connection holds: drop it, and
        close with 1013 (try again later), or at once if the client is not
        reading (a close frame would only wait behind its echoes).
        """
        self._log.info(
            "closing {client}: memory budget of {budget} bytes reached",
            client=self.client_address,
            budget=self.factory.budget.limit,
        )
        self._drop_buffers()
        if self._paused or self.state != self.STATE_OPEN:
            self.wasClean = False
            self.wasNotCleanReason = "memory budget reached"
            self.dropConnection(abort=True)
            return
        self.failedByMe = True  # Autobahn ignores the rest of the message
        self.sendCloseFrame(
            code=TRY_AGAIN_LATER, reasonUtf8=b"server busy", isReply=False
        )

    def _drop_buffers(self) -> None:
        if self._pending is not None:
            self._skip = max(0, self._need - self._pending_size)
            self._pending = None
        self.message_data = []
        self.frame_data = []
        self._held_message = self._held_write = 0
        if self._budget is not None:
            self._budget.give_all(self)

    def onMessageFrameData(self, payload: bytes) -> None:
        # What Autobahn keeps of an unfinished message, after inflation.
        if self.failedByMe:
            return
        self._held_message += len(payload)
        if self._hold(len(payload)):
            super().onMessageFrameData(payload)

    def echo(self, payload: bytes, isBinary: bool) -> None:
        if len(payload) > self.factory.max_message_size:
            # See make_factory: Autobahn may hand over a compressed message
            # cut to its budget, one byte over our limit.
            reason = f"message over {self.factory.max_message_size} bytes"
            self.sendCloseFrame(
                code=MESSAGE_TOO_BIG, reasonUtf8=reason.encode(), isReply=False
            )
            return
        try:
            self.sendMessage(payload, isBinary)
        except Disconnected:
            # The message came in after our close frame went out (shutting
            # down, or a limit hit): RFC 6455 allows no data after it.
            pass

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self._opened:
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
        self._log.info(
            "close {peer} client={client} code={code} reason={reason!r} "
            "clean={clean} closed_by={closed_by} duration={duration_ms:.0f}ms "
            "messages={messages_received}/{messages_sent} "
            "wire_bytes={received}/{sent} origin={origin} "
            "subprotocol={subprotocol} extensions={extensions}",
            **self._described(),
            code=code,
            reason=reason or "",
            clean=wasClean,
            # The server ended it: it sent the first close frame, or dropped
            # the connection without a clean close (a timeout, the budget).
            closed_by="server"
            if self.closedByMe or (self.droppedByMe and not wasClean)
            else "client",
            duration=duration,
            duration_ms=duration * 1000,
            received=stats.incomingOctetsWireLevel,
            sent=stats.outgoingOctetsWireLevel,
            messages_received=stats.incomingWebSocketMessages,
            messages_sent=stats.outgoingWebSocketMessages,
        )

    def close_code(self) -> int | None:
        """
        The close code of whoever closed first (L{None}: dropped without a
        close frame), as the log and /metrics give it.
        """
        return self.localCloseCode if self.closedByMe else self.remoteCloseCode

    def _max_message_size_exceeded(
        self, msg_size: int, max_msg_size: int, reason: str
    ) -> None:
        # Autobahn's hook for 1009; its reason names the limit it was given,
        # one byte over ours (see make_factory).
        limit = self.factory.max_message_size
        if max_msg_size == self.factory.max_frame_size:
            limit = max_msg_size
        super()._max_message_size_exceeded(
            msg_size, limit, f"message over {limit} bytes"
        )

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Any = None
    ) -> None:
        # Autobahn's reason may quote the client's headers; it goes into its
        # log lines and the answer's status line: without control characters.
        super().failHandshake(printable(reason), code, responseHeaders)

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
        self._drop_buffers()
        self.data = b""
        self._perMessageCompress = None
        self._write_echo = None
        self.is_closed = self.is_open = None
        self.transport = None


class VerboseEchoServerProtocol(EchoServerProtocol):
    """
    The echo, logging each message (the seed's C{Received:%s}); --verbose.

    A separate class so that the default echo pays nothing for it. Every
    message goes through Autobahn's path, which calls onMessage.
    """

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def onOpen(self) -> None:
        super().onOpen()
        self._log.info(
            "open {peer} client={client} origin={origin} "
            "subprotocol={subprotocol} extensions={extensions}",
            **self._described(),
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        preview: Any = payload[:VERBOSE_PREVIEW]
        if not isBinary:
            preview = preview.decode("utf-8", "replace")
        self._log.info(
            "message {peer} {kind} {size} bytes: {preview!r}{more}",
            peer=self.peer,
            kind="binary" if isBinary else "text",
            size=len(payload),
            preview=preview,
            more="..." if len(payload) > VERBOSE_PREVIEW else "",
        )
        super().onMessage(payload, isBinary)


class UncountedEchoServerProtocol(EchoServerProtocol):
    """
    The echo without its metrics (--no-metrics): counting a message costs
    about 3 us, some tenth of a small echo. A class of its own, so that the
    echo pays nothing for it, not even a test.
    """

    counted = False
    onMessageBegin = WebSocketServerProtocol.onMessageBegin
    onMessage = EchoServerProtocol.echo


def make_factory(settings: EchoSettings) -> EchoServerFactory:
    """
    Build the Autobahn factory for the echo at C{/socket}.

    The URL is left out: the listening port is not known before listening,
    and the Host header is checked by the origin policy instead.
    """
    factory = EchoServerFactory(url=None, server="wsecho")
    # --verbose counts messages even with --no-metrics: it is slow anyway.
    factory.protocol = (
        VerboseEchoServerProtocol
        if settings.verbose
        else EchoServerProtocol
        if settings.metrics
        else UncountedEchoServerProtocol
    )
    factory.subprotocols = tuple(settings.subprotocols)
    # Autobahn bounds inflation by its message size limit, but when the
    # inflater stops exactly at that limit in the middle of a run it passes
    # the message on cut short instead of refusing it. So Autobahn gets one
    # byte more than our limit, and the echo refuses anything over the limit
    # itself: a cut message is then always one byte over, never echoed.
    factory.max_message_size = settings.max_message_size
    factory.max_frame_size = settings.max_frame_size
    factory.slow_client_timeout = settings.slow_client_timeout
    factory.max_connections = settings.max_connections
    factory.max_connections_per_ip = settings.max_connections_per_ip
    factory.budget.limit = settings.memory_budget
    budget = settings.max_message_size + 1
    factory.accept_deflate = accept_deflate(budget) if settings.compression else None
    factory.setProtocolOptions(
        # GET /socket is answered by the resource, not by a status page
        # that names library versions.
        webStatus=False,
        # Send the close frame (1002, 1007, 1009) before dropping a peer
        # that broke the protocol, as RFC 6455 asks.
        failByDrop=False,
        maxMessagePayloadSize=budget,
        maxFramePayloadSize=settings.max_frame_size,
        openHandshakeTimeout=settings.open_handshake_timeout,
        closeHandshakeTimeout=settings.close_handshake_timeout,
        autoPingInterval=settings.ping_interval,
        autoPingTimeout=settings.ping_timeout,
        tcpNoDelay=True,
        # An echo echoes the client's close code and reason too (RFC 6455
        # 5.5.1: "typically echoes the status code it received").
        echoCloseCodeReason=True,
        # Origins are checked by wsecho.web.EchoResource, which answers 403.
        # Both must be given together: a call that omits allowNullOrigin
        # resets it.
        allowedOrigins=["*"],
        allowNullOrigin=True,
    )
    return factory
