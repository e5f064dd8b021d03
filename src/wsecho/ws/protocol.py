"""
The echo itself: an Autobahn server protocol that sends every message back
with its type, and the factory that holds its protocol options.

The protocol is built from its parts: L{wsecho.wire.frames} (the fast path's
frame scanner), L{wsecho.ws.flow} (the producer, the slow-client timer
and the memory budget), L{wsecho.ws.lifecycle} (closing, logging, forgetting)
and L{wsecho._compat} (the Autobahn internals the fast path needs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionRequest

from wsecho._compat import MessageTooBig, QuickOptions, allow_close_code
from wsecho.daemon.logs import printable
from wsecho.settings import EchoSettings
from wsecho.wire.deflate import accept_deflate
from wsecho.ws.factory import EchoServerFactory
from wsecho.ws.fastpath import FastPath
from wsecho.ws.flow import Backpressure
from wsecho.ws.lifecycle import Lifecycle

# How many chunks of a message are kept apart before they are folded into
# one buffer (see EchoServerProtocol.onMessageFrame).
FOLD_CHUNKS = 64

# How much of a message --verbose shows.
VERBOSE_PREVIEW = 120

# Close codes of our own making.
MESSAGE_TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
# Registered with IANA (bad gateway), and valid in a close frame; Autobahn's
# list ends at 1013 and fails a peer that sends it with 1002.
BAD_GATEWAY = 1014
allow_close_code(BAD_GATEWAY)


class EchoServerProtocol(  # type: ignore[misc]
    FastPath,
    Lifecycle,
    Backpressure,
    QuickOptions,
    MessageTooBig,
    WebSocketServerProtocol,
):
    """
    Send every message back as it came: text as text, binary as binary.
    """

    _began = 0.0
    # The client's address as logged and counted for the per-address
    # limit: the peer's, or the one a trusted proxy forwarded.
    client_address = "-"

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

    def connectionMade(self) -> None:
        super().connectionMade()
        self.take_producer()
        factory = self.factory
        factory.connected(self)
        self.start_fast_path(factory.metrics.echoes if factory.counted else None)

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
        if self._tally is not None:
            self._began = time.perf_counter()
        super().onMessageBegin(isBinary)

    def onMessageEnd(self) -> None:
        super().onMessageEnd()
        # The message has been echoed (or refused): it is the write buffer's
        # now, counted there if the client does not read it.
        if self._held_message:
            self.release(self._held_message)
            self._held_message = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.echo(payload, isBinary)
        tally = self._tally
        if tally is None or self.state != self.STATE_OPEN:
            return  # not counted, refused, or after our close frame
        tally.message(isBinary, len(payload))
        tally.latency(time.perf_counter() - self._began)

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
        self.drop_buffers()
        if self._paused or self.state != self.STATE_OPEN:
            self.wasClean = False
            self.wasNotCleanReason = "memory budget reached"
            self.dropConnection(abort=True)
            return
        self.failedByMe = True  # Autobahn ignores the rest of the message
        self.sendCloseFrame(
            code=TRY_AGAIN_LATER, reasonUtf8=b"server busy", isReply=False
        )

    def drop_buffers(self) -> None:
        self.stop_fast_path()
        self.message_data = []
        self.frame_data = []
        self.release_all()

    def onMessageFrameData(self, payload: bytes) -> None:
        # What Autobahn keeps of an unfinished message, after inflation.
        if self.failedByMe:
            return
        self._held_message += len(payload)
        if self.hold(len(payload)):
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

    def too_big(self, limit: int) -> tuple[int, str]:
        # Autobahn's limit is one byte over ours (see make_factory), unless
        # it was the frame's.
        if limit != self.factory.max_frame_size:
            limit = self.factory.max_message_size
        return limit, f"message over {limit} bytes"

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Any = None
    ) -> None:
        # Autobahn's reason may quote the client's headers; it goes into its
        # log lines and the answer's status line: without control characters.
        super().failHandshake(printable(reason), code, responseHeaders)

    def _forget(self) -> None:
        super()._forget()
        self._write_echo = None  # it holds the transport


class VerboseEchoServerProtocol(EchoServerProtocol):
    """
    The echo, logging each message (the seed's C{Received:%s}); --verbose.

    A separate class so that the default echo pays nothing for it. Every
    message goes through Autobahn's path, which calls onMessage.
    """

    fast_path = False

    def onOpen(self) -> None:
        super().onOpen()
        self._log.info(
            "open {peer} client={client} origin={origin} "
            "subprotocol={subprotocol} extensions={extensions}",
            **self.described(),
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


def make_factory(settings: EchoSettings) -> EchoServerFactory:
    """
    Build the Autobahn factory for the echo at C{/socket}.

    The URL is left out: the listening port is not known before listening,
    and the Host header is checked by the origin policy instead.
    """
    factory = EchoServerFactory(url=None, server="wsecho")
    factory.protocol = (
        VerboseEchoServerProtocol if settings.verbose else EchoServerProtocol
    )
    # --verbose counts messages even with --no-metrics: it is slow anyway.
    factory.counted = settings.metrics or settings.verbose
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
        # The opening handshake's deadline is the channel's (the same
        # setting, from the TCP connection: see wsecho.http.site.make_site). The
        # request is whole when Autobahn gets the connection, and answered
        # in the same call: a timer of its own would only be started and
        # cancelled (2.6 us a handshake, by timeit).
        openHandshakeTimeout=0,
        closeHandshakeTimeout=settings.close_handshake_timeout,
        autoPingInterval=settings.ping_interval,
        autoPingTimeout=settings.ping_timeout,
        tcpNoDelay=True,
        # An echo echoes the client's close code and reason too (RFC 6455
        # 5.5.1: "typically echoes the status code it received").
        echoCloseCodeReason=True,
        # Origins are checked by wsecho.http.site.EchoResource, which answers 403.
        # Both must be given together: a call that omits allowNullOrigin
        # resets it.
        allowedOrigins=["*"],
        allowNullOrigin=True,
    )
    return factory
