"""
The reference the 9.* performance cases are compared with: Autobahn-Python's
own testee, a plain Autobahn echo on Twisted with the TestSuite's settings
(failByDrop off, permessage-deflate accepted), as server or as client.

    python conformance/autobahn_testee.py server --port 9002
    python conformance/autobahn_testee.py client --url ws://127.0.0.1:9003
"""

import argparse
import sys

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
    connectWS,
)
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import reactor

AGENT = "autobahn-python"


class EchoServer(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


def accept_offer(offers):
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class EchoClient(WebSocketClientProtocol):
    def onMessage(self, payload, isBinary):
        if self.factory.total is None:
            self.factory.total = int(payload)
        else:
            self.sendMessage(payload, isBinary)


def accept_response(response):
    if isinstance(response, PerMessageDeflateResponse):
        return PerMessageDeflateResponseAccept(response)
    return None


class EchoClientFactory(WebSocketClientFactory):
    protocol = EchoClient

    def __init__(self, url):
        super().__init__(url + "/getCaseCount")
        self.base = url
        self.total = None
        self.case = 0
        self.setProtocolOptions(
            failByDrop=False,
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=accept_response,
        )

    def clientConnectionLost(self, connector, reason):
        self.case += 1
        if self.total is not None and self.case <= self.total:
            self.setSessionParameters(
                f"{self.base}/runCase?case={self.case}&agent={AGENT}"
            )
        elif self.total is not None and self.case == self.total + 1:
            self.setSessionParameters(f"{self.base}/updateReports?agent={AGENT}")
        else:
            reactor.stop()
            return
        connector.connect()

    def clientConnectionFailed(self, connector, reason):
        print(f"autobahn_testee: {reason.getErrorMessage()}", file=sys.stderr)
        reactor.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    args = parser.parse_args()
    if args.mode == "server":
        factory = WebSocketServerFactory()
        factory.protocol = EchoServer
        factory.setProtocolOptions(
            failByDrop=False, perMessageCompressionAccept=accept_offer
        )
        port = reactor.listenTCP(args.port, factory, interface="127.0.0.1")
        print(f"listening on {port.getHost().port}", flush=True)
    else:
        connectWS(EchoClientFactory(args.url))
    reactor.run()


if __name__ == "__main__":
    main()
