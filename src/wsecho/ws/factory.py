"""
The echo's Autobahn factory: the settings and the shared context every
connection is built with, and Autobahn's protocol options set from them.
"""

from __future__ import annotations

from typing import Any, cast

from wsecho._compat.autobahn import ServerFactory
from wsecho.settings import EchoSettings
from wsecho.wire.deflate import accept_deflate
from wsecho.ws.context import EchoContext
from wsecho.ws.protocol import EchoServerProtocol
from wsecho.ws.verbose import VerboseEchoServerProtocol


class EchoServerFactory(ServerFactory):
    """
    Autobahn's factory, holding one L{EchoSettings} and the process's
    L{EchoContext}.
    """

    def __init__(self, settings: EchoSettings, context: EchoContext) -> None:
        # The URL is left out: the listening port is not known before
        # listening, and the Host header is checked by the origin policy.
        super().__init__(url=None, server="wsecho", reactor=context.clock)
        self.settings = settings
        self.context = context
        self.protocol = (
            VerboseEchoServerProtocol if settings.verbose else EchoServerProtocol
        )
        # --verbose counts messages even with --no-metrics: it is slow anyway.
        self.tally = (
            context.metrics.echoes if settings.metrics or settings.verbose else None
        )
        # Autobahn bounds inflation by its message size limit, but when the
        # inflater stops exactly at that limit in the middle of a run it
        # passes the message on cut short instead of refusing it. So
        # Autobahn gets one byte more than our limit, and the echo refuses
        # anything over the limit itself: a cut message is then always one
        # byte over, never echoed.
        autobahn_limit = settings.max_message_size + 1
        self.accept_deflate = (
            accept_deflate(autobahn_limit) if settings.compression else None
        )
        self.setProtocolOptions(
            # GET /socket is answered by the resource, not by a status page
            # that names library versions.
            webStatus=False,
            # Send the close frame (1002, 1007, 1009) before dropping a peer
            # that broke the protocol, as RFC 6455 asks.
            failByDrop=False,
            maxMessagePayloadSize=autobahn_limit,
            maxFramePayloadSize=settings.max_frame_size,
            # The opening handshake's deadline is the channel's (the same
            # setting, from the TCP connection: see wsecho.http.site). The
            # request is whole when Autobahn gets the connection, and
            # answered in the same call: a timer of its own would only be
            # started and cancelled (2.6 us a handshake, by timeit).
            openHandshakeTimeout=0,
            closeHandshakeTimeout=settings.close_handshake_timeout,
            autoPingInterval=settings.ping_interval,
            autoPingTimeout=settings.ping_timeout,
            tcpNoDelay=True,
            # An echo echoes the client's close code and reason too (RFC 6455
            # 5.5.1: "typically echoes the status code it received").
            echoCloseCodeReason=True,
            # Origins are checked by wsecho.http.upgrade.EchoResource, which
            # answers 403. Both must be given together: a call that omits
            # allowNullOrigin resets it.
            allowedOrigins=["*"],
            allowNullOrigin=True,
        )

    # Autobahn is untyped: mypy cannot see that the echo's protocol is a
    # Twisted Protocol.
    def buildProtocol(self, addr: Any) -> EchoServerProtocol:  # type: ignore[override]
        protocol = cast(EchoServerProtocol, super().buildProtocol(addr))
        # wsecho.http.upgrade.EchoResource replaces it with the address it
        # decided the client has (a trusted proxy's forwarded one).
        protocol.client_address = getattr(addr, "host", None) or str(addr)
        return protocol


def make_factory(
    settings: EchoSettings, context: EchoContext | None = None
) -> EchoServerFactory:
    """
    Build the Autobahn factory for the echo at C{/socket}, with a context
    of its own unless given one.
    """
    return EchoServerFactory(settings, context or EchoContext(settings))
