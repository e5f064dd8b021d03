"""
wsecho's client as the testee of the Autobahn TestSuite's fuzzing server
(C{wstest -m fuzzingserver}, which tests clients):

    python -m wsecho.client.testee --url ws://127.0.0.1:9001 --agent wsecho

It asks the fuzzing server for its case count, runs every case, echoing what
the server sends, then asks it to write its reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from twisted.internet import defer, endpoints, task
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from wsecho.client import configure_client_factory


class TesteeProtocol(WebSocketClientProtocol):
    """
    Echo every message; the first message of /getCaseCount is the count.
    """

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.factory.echo:
            self.sendMessage(payload, isBinary)
        else:
            self.factory.messages.append(payload)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.factory.done.callback(self.factory.messages)


class TesteeFactory(WebSocketClientFactory):
    protocol = TesteeProtocol

    def __init__(self, url: str, echo: bool) -> None:
        super().__init__(url, useragent="wsecho-testee")
        configure_client_factory(self)
        self.echo = echo
        self.messages: list[bytes] = []
        self.done: defer.Deferred[list[bytes]] = defer.Deferred()


async def _visit(
    reactor: Any, base: str, resource: str, echo: bool = False
) -> list[bytes]:
    """
    Open one connection to C{base + resource}; return what it received once
    it is closed.
    """
    url = base + resource
    _, host, port, _, _, _ = parse_url(url)
    factory = TesteeFactory(url, echo)
    await endpoints.HostnameEndpoint(reactor, host, port).connect(factory)
    return await factory.done


async def run(reactor: Any, url: str, agent: str, out: Any = sys.stdout) -> int:
    base = url.rstrip("/")
    agent = quote(agent)
    [count] = await _visit(reactor, base, "/getCaseCount")
    total = int(count)
    for case in range(1, total + 1):
        print(f"case {case}/{total}", file=out, flush=True)
        await _visit(reactor, base, f"/runCase?case={case}&agent={agent}", echo=True)
    await _visit(reactor, base, f"/updateReports?agent={agent}")
    return total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wsecho.client.testee",
        description="Run wsecho's client against the Autobahn TestSuite fuzzing server.",
    )
    parser.add_argument(
        "--url", default="ws://127.0.0.1:9001", help="the fuzzing server"
    )
    parser.add_argument("--agent", default="wsecho", help="the name in the reports")
    args = parser.parse_args(argv)
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(run(reactor, args.url, args.agent))
    )


if __name__ == "__main__":
    main()
