"""A raw Twisted TCP echo: no WebSocket framing, the ceiling on Twisted."""

import sys

from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


factory = protocol.Factory.forProtocol(Echo)
reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1")
reactor.run()
