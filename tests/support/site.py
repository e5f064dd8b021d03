"""
wsecho's site in this process, on a real loopback port.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase

from wsecho.config import EchoSettings
from wsecho.web import make_site

from . import poll


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
