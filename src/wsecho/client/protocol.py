"""
The connection of wsecho-client: an Autobahn client protocol that hands
what happens to the run that owns it (L{wsecho.client.session.Session}),
and the factory that carries the options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from wsecho import __version__
from wsecho._compat.autobahn_client import ClientProtocol, is_secure
from wsecho.client.connect import Proxy, tls_options
from wsecho.client.output import Config, Message

if TYPE_CHECKING:
    from wsecho.client.session import Session


class EchoClientProtocol(ClientProtocol):
    """
    Hands what happens on the connection to the L{Session} that owns it.
    """

    lostReason: Failure | None = None

    def onOpen(self) -> None:
        self.factory.session.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.session.received(Message(payload, isBinary))

    def onPing(self, payload: bytes) -> None:
        super().onPing(payload)
        self.factory.session.pinged(payload)

    def onPong(self, payload: bytes) -> None:
        self.factory.session.ponged(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.session.closed(self, wasClean, code, reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Kept for onClose, which Autobahn calls from here: it is how a TLS
        # verification failure is told apart from other drops.
        self.lostReason = reason
        super().connectionLost(reason)


class _ClientFactory(WebSocketClientFactory):
    protocol = EchoClientProtocol
    session: Session
    wsecho_proxy: Proxy | None = None
    # The Proxy-Authorization value, if the proxy takes credentials.
    proxy_authorization: str | None = None


def client_factory(
    config: Config, session: Session, proxy: Proxy | None = None
) -> WebSocketClientFactory:
    factory = _ClientFactory(
        config.url,
        origin=config.origin,
        protocols=config.subprotocols or None,
        headers=config.headers or None,
        useragent=f"wsecho-client/{__version__}",
        proxy={"host": proxy.host, "port": proxy.port} if proxy else None,
    )
    factory.session = session
    factory.wsecho_proxy = proxy
    factory.proxy_authorization = proxy.authorization if proxy else None
    if proxy is not None and is_secure(factory):
        # TLS starts inside the tunnel, with this run's options.
        factory.contextFactory = tls_options(config, factory.host)
    # Session's own timer covers connecting and the opening handshake.
    configure_client_factory(factory, config.compression, config.timeout)
    factory.setProtocolOptions(openHandshakeTimeout=0)
    return factory


def _accept_deflate(
    response: PerMessageDeflateResponse,
) -> PerMessageDeflateResponseAccept:
    return PerMessageDeflateResponseAccept(response)


def configure_client_factory(
    factory: WebSocketClientFactory, compression: bool = True, timeout: float = 10.0
) -> None:
    """
    The protocol options of wsecho's client, shared by C{wsecho-client} and
    the TestSuite testee (L{wsecho.client.testee}).
    """
    factory.setProtocolOptions(
        openHandshakeTimeout=timeout,
        closeHandshakeTimeout=timeout,
        # Send the close frame (1002, 1007, ...) before dropping a server
        # that broke the protocol, as RFC 6455 asks.
        failByDrop=False,
        tcpNoDelay=True,
    )
    if compression:
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=_accept_deflate,
        )
