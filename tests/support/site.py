"""
wsecho's site in this process: on a real loopback port, or on an in-memory
transport.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase

from wsecho.http.site import make_site
from wsecho.settings import EchoSettings

from . import poll

PEER = IPv4Address("TCP", "127.0.0.1", 5555)
HOST = IPv4Address("TCP", "127.0.0.1", 8181)


def serve(
    test: TestCase, settings: EchoSettings | None = None
) -> tuple[int, WrappingFactory]:
    """
    Listen with wsecho's site on 127.0.0.1 on a free port; on cleanup stop
    listening and wait for every connection to be closed.
    """
    tracked = WrappingFactory(make_site(settings or EchoSettings()))
    port = reactor.listenTCP(0, tracked, interface="127.0.0.1")

    async def close() -> None:
        await port.stopListening()
        try:
            await poll(lambda: not tracked.protocols, deadline=5)
        finally:
            for protocol in list(tracked.protocols):
                protocol.transport.abortConnection()
            await poll(lambda: not tracked.protocols)

    test.addCleanup(lambda: defer.Deferred.fromCoroutine(close()))
    return port.getHost().port, tracked


def connect_in_memory(site: Any, clock: Any = None) -> tuple[Any, StringTransport]:
    """
    A connection from L{PEER} to C{site} on an in-memory transport: its
    channel, and the transport, whose C{protocol} is the echo's once the
    connection is upgraded. With a C{clock}, the channel's deadlines run on
    it.
    """
    channel = site.buildProtocol(PEER)
    if clock is not None:
        channel.callLater = clock.callLater
    transport = StringTransport(peerAddress=PEER, hostAddress=HOST)
    transport.protocol = channel  # where the echo takes the connection over
    channel.makeConnection(transport)
    return channel, transport
