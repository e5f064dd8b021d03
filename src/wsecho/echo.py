"""
The echo itself: an Autobahn server protocol that sends every message back
with its type, and the factory that holds its protocol options.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.types import ConnectionRequest
from autobahn.websocket.xormasker import (  # type: ignore[attr-defined]
    create_xor_masker,
)
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.internet.tcp import Connection
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .metrics import Metrics

MiB = 1024 * 1024

# The deflate context kept per connection for compressing echoes: a
# 2**13-byte window and memLevel 6 take about 64 KiB (zlib's
# 2**(window+2) + 2**(memLevel+9)) instead of the 256 KiB of zlib's
# defaults. It is made at a connection's first compressed message. The
# inflate side is bounded by the message size limit.
DEFLATE_WINDOW_BITS = 13
DEFLATE_MEM_LEVEL = 6

# How many chunks of a message are kept apart before they are folded into
# one buffer (see EchoServerProtocol.onMessageFrame).
FOLD_CHUNKS = 64

# How much of a message --verbose shows.
VERBOSE_PREVIEW = 120

# The first byte of the frames the fast path echoes (see
# EchoServerProtocol.dataReceived): FIN, no RSV bit, text or binary.
FIN_TEXT = 0x81
FIN_BINARY = 0x82

# How much is read from a socket at a time, and how much may wait in a
# connection's write buffer before the echo stops reading from its client.
READ_SIZE = 256 * 1024

# Up to this size a payload is unmasked with Python's integers: Autobahn's C
# masker costs 3 us a call whatever the size, the integers 0.4 us at 32
# bytes and as much as the C masker at 1 KiB.
SMALL_PAYLOAD = 1024


def unmask(payload: bytes, mask: bytes) -> bytes:
    """
    Undo a client's masking (RFC 6455, 5.3): C{payload} XOR C{mask}
    repeated.
    """
    size = len(payload)
    if size > SMALL_PAYLOAD:
        return create_xor_masker(mask, size).process(payload)  # type: ignore[no-any-return]
    key = (mask * ((size + 3) >> 2))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def valid_utf8(payload: bytes) -> bool:
    # Python's codec is as strict as RFC 6455 asks (RFC 3629): no
    # surrogates, no overlong forms, nothing past U+10FFFF.
    if payload.isascii():
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def can_send_now(transport: Any) -> bool:
    """
    Whether L{send_now} may write to C{transport} itself: a TCP connection
    with the buffer attributes it reads (TLS and other transports only
    buffer).
    """
    return isinstance(transport, Connection) and all(
        hasattr(transport, name)
        for name in ("_tempDataLen", "dataBuffer", "offset", "socket")
    )


def send_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to a TCP connection at once when nothing is waiting before
    it, and leave the rest to the transport.

    Twisted's C{write} only buffers: the data goes out when the reactor next
    finds the socket writable, which costs a turn of the reactor loop and two
    C{epoll_ctl} calls per echo: a third of a small echo's time (58,000 to
    86,000 echoes a second on one core). asyncio's transports send at once
    in the same way. This reads Twisted's private
    buffer attributes, checked by L{can_send_now}.
    """
    if (
        transport._tempDataLen
        or len(transport.dataBuffer) > transport.offset
        or transport.disconnecting
        or not transport.connected
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:
        # EAGAIN or a broken connection: Twisted's write path sorts out
        # which, as it would have.
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])


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


# Close codes of our own making.
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009


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
    logOctets: bool  # Autobahn's, set from the factory
    # The start of a frame the fast path waits to have whole.
    _pending: bytearray | None = None
    _write_echo: Callable[[bytes], None] | None = None

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
        stats = self.trafficStats
        if self.state == self.STATE_OPEN:
            stats.outgoingOctetsWireLevel += len(data)
        elif self.state == self.STATE_CONNECTING:
            stats.preopenOutgoingOctetsWireLevel += len(data)

    def pauseProducing(self) -> None:
        # TCP transports stop reading; TLS passes it on to the TCP one.
        cast(Any, self.transport).pauseProducing()
        timeout = self.factory.slow_client_timeout
        if timeout and self._slow_timer is None:
            self._slow_timer = self.factory.reactor.callLater(timeout, self._too_slow)

    def resumeProducing(self) -> None:
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
            "origin": self.http_headers.get("origin", "-"),
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

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.echo(payload, isBinary)
        if self.state != self.STATE_OPEN:
            return  # refused, or came after our close frame: not echoed
        tally = self.factory.metrics.echoes
        tally.message(isBinary, len(payload))
        tally.latency(time.perf_counter() - self._began)

    def dataReceived(self, data: bytes) -> None:
        """
        Echo the whole single-frame messages at the start of C{data} here,
        and hand the rest to Autobahn.

        Most messages are a single frame, and Autobahn's frame machinery (a
        header object, a masker object, a UTF-8 validator object, eight
        callbacks and their debug logging) costs a 32-byte echo two thirds
        of its time. This path takes unfragmented text and binary frames
        within the size limits, on an open connection without
        permessage-deflate, between messages. It checks what Autobahn would
        (masking, RSV bits, opcode, minimal length, UTF-8) and leaves
        anything else, invalid frames included, to Autobahn, which answers
        them with the right close code.

        A binary frame cut across reads is kept until it is whole (bounded
        by the size limit, as Autobahn's buffer is); a text frame cut across
        reads goes to Autobahn, which validates its UTF-8 as it arrives and
        fails an invalid one before the rest is sent.
        """
        if self._pending is not None:
            self._pending += data
            data, self._pending = self._pending, None  # type: ignore[assignment]
        if (
            self.state != self.STATE_OPEN
            or self.data
            or self.current_frame is not None
            or self.inside_message
            or self._perMessageCompress is not None
        ):
            self._dataReceived(data)
            return
        began = time.perf_counter()
        size = len(data)
        limit = self._fast_limit
        tally = self._tally
        at = 0
        wait = False  # for the rest of a frame that is ours to echo
        replies = []
        while at < size:
            first = data[at]
            if first != FIN_TEXT and first != FIN_BINARY:
                break
            if size - at < 2:
                wait = True
                break
            length = data[at + 1] ^ 0x80  # the mask bit must be set
            if length < 126:
                start = at + 6
                header = bytes((first, length))
            elif length == 126:
                start = at + 8
                if size < start:
                    wait = True
                    break
                length = (data[at + 2] << 8) | data[at + 3]
                if length < 126:
                    break  # not minimal: a protocol error, Autobahn's to answer
                header = bytes((first, 126)) + data[at + 2 : at + 4]
            elif length == 127:
                start = at + 14
                if size < start:
                    wait = True
                    break
                length = int.from_bytes(data[at + 2 : at + 10], "big")
                if length < 65536:
                    break  # not minimal (past 2**63, over any limit)
                header = bytes((first, 127)) + data[at + 2 : at + 10]
            else:
                break  # unmasked
            if length > limit:
                break  # Autobahn answers 1009
            end = start + length
            if end > size:
                wait = first == FIN_BINARY or size < start
                break
            mask = bytes(data[start - 4 : start])  # data may be a bytearray
            if length > SMALL_PAYLOAD:  # unmasked without a copy first
                payload = unmask(memoryview(data)[start:end], mask)
            else:
                payload = unmask(data[start:end], mask)
            if first == FIN_TEXT and not valid_utf8(payload):
                break
            replies.append(header)
            replies.append(payload)
            if tally is not None:
                tally.message(first == FIN_BINARY, length)
            at = end
        if at:
            reply = b"".join(replies)
            self._write_echo(reply)
            count = len(replies) >> 1
            stats = self.trafficStats
            stats.incomingOctetsWireLevel += at
            stats.incomingWebSocketMessages += count
            stats.outgoingOctetsWireLevel += len(reply)
            stats.outgoingWebSocketMessages += count
            if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()
            if tally is not None:
                tally.latency(time.perf_counter() - began, count)
        if at < size:
            rest = data[at:] if at else data
            if wait:
                self._pending = bytearray(rest)
            else:
                self._dataReceived(rest)

    def echo(self, payload: bytes, isBinary: bool) -> None:
        if len(payload) > self.factory.max_message_size:
            # See make_factory: Autobahn may hand over a compressed message
            # cut to its budget, one byte over our limit.
            self.sendCloseFrame(
                code=MESSAGE_TOO_BIG, reasonUtf8=b"message too big", isReply=False
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
        # The seed printed the peer's close code and reason; so do we, with
        # whether the closing handshake completed, and what went through.
        stats = self.trafficStats
        self._log.info(
            "close {peer} client={client} code={code} reason={reason!r} "
            "clean={clean} duration={duration:.3f} received={received} "
            "sent={sent} origin={origin} subprotocol={subprotocol} "
            "extensions={extensions}",
            **self._described(),
            code=code,
            reason=reason or "",
            clean=wasClean,
            closed_by="server" if self.closedByMe else "client",
            local_code=self.localCloseCode,
            duration=time.monotonic() - self._opened_at,
            received=stats.incomingOctetsWireLevel,
            sent=stats.outgoingOctetsWireLevel,
            messages_received=stats.incomingWebSocketMessages,
            messages_sent=stats.outgoingWebSocketMessages,
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.stopProducing()
        self.factory.forget(self)
        # Autobahn leaves the closing-handshake timer running when the peer
        # drops the connection first; it would hold this protocol for
        # --close-handshake-timeout seconds more.
        if self.closeHandshakeTimeoutCall is not None:
            self.closeHandshakeTimeoutCall.cancel()
            self.closeHandshakeTimeoutCall = None


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


class EchoServerFactory(WebSocketServerFactory):
    """
    Autobahn's factory, with what the echo needs to know of its settings,
    and the open connections, counted per client address for the limits
    and kept for a graceful shutdown.
    """

    _log = Logger()

    protocol = EchoServerProtocol
    subprotocols: tuple[str, ...] = ()
    max_message_size: int = 16 * MiB
    max_frame_size: int = 16 * MiB
    slow_client_timeout: float = 0.0
    max_connections = 0
    max_connections_per_ip = 0
    draining = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections: set[EchoServerProtocol] = set()
        self.per_address: Counter[str] = Counter()
        self._drained: list[Deferred[None]] = []
        # Set by wsecho.web.EchoResource for the protocol it is about to
        # build: the address it decided the client has.
        self.next_client_address: str | None = None
        self.last_built: EchoServerProtocol | None = None
        self.metrics = Metrics()

    def buildProtocol(self, addr: Any) -> EchoServerProtocol:
        protocol = cast(EchoServerProtocol, super().buildProtocol(addr))
        self.last_built = protocol
        if self.next_client_address is not None:
            protocol.client_address = self.next_client_address
        else:
            protocol.client_address = getattr(addr, "host", None) or str(addr)
        return protocol

    def would_exceed(self, address: str) -> str | None:
        """
        Why a new connection from C{address} would pass a connection limit,
        or L{None} if it may go ahead.
        """
        if self.max_connections and len(self.connections) >= self.max_connections:
            return "too many connections"
        per_ip = self.max_connections_per_ip
        if per_ip and self.per_address[address] >= per_ip:
            return "too many connections from this address"
        return None

    def connected(self, protocol: EchoServerProtocol) -> None:
        self.connections.add(protocol)
        self.per_address[protocol.client_address] += 1
        self.metrics.connections_open.inc()

    def forget(self, protocol: EchoServerProtocol) -> None:
        if protocol not in self.connections:
            return
        self.connections.remove(protocol)
        if protocol._opened:
            self.metrics.connection_closed(
                protocol.localCloseCode
                if protocol.closedByMe
                else protocol.remoteCloseCode,
                protocol.trafficStats,
                bool(protocol._perMessageCompress),
            )
        else:
            self.metrics.connections_open.dec()
            self.metrics.refusals.labels("bad_handshake").inc()
        self.per_address[protocol.client_address] -= 1
        if not self.per_address[protocol.client_address]:
            del self.per_address[protocol.client_address]
        if self.draining and not self.connections:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def drain(self, timeout: float, clock: IReactorTime) -> Deferred[None]:
        """
        Close every connection with 1001 (going away); fire once all are
        closed, dropping those still open after C{timeout} seconds.
        """
        self.draining = True
        for protocol in list(self.connections):
            try:
                protocol.going_away()
            except Exception:
                self._log.failure("closing {peer}", peer=protocol.peer)
                protocol.dropConnection(abort=True)
        if not self.connections:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._drained.append(done)
        self._log.info(
            "waiting up to {timeout} s for {count} connections to close",
            timeout=timeout,
            count=len(self.connections),
        )

        def drop_the_rest() -> None:
            for protocol in list(self.connections):
                protocol.dropConnection(abort=True)

        timer = clock.callLater(timeout, drop_the_rest)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()

        return done.addCallback(stop_timer)


def _accept_deflate(
    max_message_size: int,
) -> Callable[[Sequence[Any]], PerMessageDeflateOfferAccept | None]:
    def accept(offers: Sequence[Any]) -> PerMessageDeflateOfferAccept | None:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                # Honour a client's server_max_window_bits (0: none asked),
                # but never use a larger window than our own bound.
                requested = offer.request_max_window_bits or DEFLATE_WINDOW_BITS
                return PerMessageDeflateOfferAccept(
                    offer,
                    window_bits=min(requested, DEFLATE_WINDOW_BITS),
                    mem_level=DEFLATE_MEM_LEVEL,
                    max_message_size=max_message_size,
                )
        return None

    return accept


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
    budget = settings.max_message_size + 1
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
        perMessageCompressionAccept=(
            _accept_deflate(budget) if settings.compression else None
        ),
        # Origins are checked by wsecho.web.EchoResource, which answers 403.
        # Both must be given together: a call that omits allowNullOrigin
        # resets it.
        allowedOrigins=["*"],
        allowNullOrigin=True,
    )
    return factory
