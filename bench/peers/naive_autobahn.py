"""The naive version of this project: Autobahn's echo on Twisted, options left alone."""

import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet import reactor


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


factory = WebSocketServerFactory()
factory.protocol = Echo
if "--deflate" in sys.argv:  # S7: accept the client's offer as it stands
    factory.setProtocolOptions(
        perMessageCompressionAccept=lambda offers: next(
            (
                PerMessageDeflateOfferAccept(offer)
                for offer in offers
                if isinstance(offer, PerMessageDeflateOffer)
            ),
            None,
        )
    )
reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1")
reactor.run()
