"""
Shutting down gracefully, and the health checks load balancers poll.
"""

import asyncio
import re
import resource
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support import DEADLINE, poll
from support.daemon import start_daemon
from support.site import serve
from test_sockets import silent_client, status
from wsecho.http.site import make_site
from wsecho.settings import EchoSettings


class HealthTests(TestCase):
    async def test_healthz_and_readyz(self) -> None:
        """
        /healthz and /readyz answer 200, and /readyz 503 once draining.
        """
        site = make_site(EchoSettings())
        treq = StubTreq(site.resource)
        for path, body in (("healthz", "ok\n"), ("readyz", "ready\n")):
            response = await treq.get(f"http://localhost/{path}")
            self.assertEqual((response.code, await response.text()), (200, body))
        await site.context.registry.drain(1, reactor)
        response = await treq.get("http://localhost/readyz")
        self.assertEqual(response.code, 503)
        self.assertEqual((await treq.get("http://localhost/healthz")).code, 200)


class DrainTests(TestCase):
    async def test_clients_get_going_away(self) -> None:
        """
        Draining sends every client close 1001 after echoing what it had
        sent, and fires once all are closed.
        """
        port, tracked = serve(self)
        factory = tracked.wrappedFactory.context.registry

        echoed = []

        def client():
            with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
                ws.send("before")
                echoes = [ws.recv(timeout=DEADLINE)]
                echoed.append(True)
                try:
                    while True:
                        echoes.append(ws.recv(timeout=DEADLINE))
                except ConnectionClosed as e:
                    return echoes, e.rcvd.code, e.rcvd.reason

        clients = [deferToThread(client) for _ in range(5)]
        await poll(lambda: len(echoed) == 5)
        await factory.drain(DEADLINE, reactor)
        self.assertEqual(factory.connections, set())
        for d in clients:
            self.assertEqual(await d, (["before"], 1001, "server shutting down"))

    async def test_silent_client_is_dropped(self) -> None:
        """
        A client that never answers the close frame is dropped after the
        shutdown timeout, and draining still completes.
        """
        port, tracked = serve(self)
        factory = tracked.wrappedFactory.context.registry

        client = deferToThread(silent_client, port)
        await poll(lambda: len(factory.connections) == 1)
        await factory.drain(1, reactor)
        received = await client
        self.assertEqual(status(received), 101)
        self.assertIn(b"\x88", received.split(b"\r\n\r\n", 1)[1][:1])  # a close frame


@pytest.mark.system
def test_sigterm_closes_clients_and_exits_zero(tmp_path) -> None:
    """
    On SIGTERM the real daemon sends open clients 1001, echoes what they
    sent first, and exits 0.
    """
    import threading

    daemon = start_daemon(tmp_path, "--shutdown-timeout", "5")
    port = daemon.port
    result = {}
    connected = threading.Event()

    def client():
        with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
            ws.send("last words")
            result["echo"] = ws.recv(timeout=DEADLINE)
            connected.set()
            try:
                ws.recv(timeout=DEADLINE)
            except ConnectionClosed as e:
                result["code"] = e.rcvd.code

    thread = threading.Thread(target=client)
    thread.start()
    assert connected.wait(DEADLINE)
    daemon.terminate()
    thread.join(DEADLINE)
    assert daemon.process.wait(timeout=DEADLINE) == 0, "".join(daemon.log)
    assert result == {"echo": "last words", "code": 1001}
    daemon.wait_for("SIGTERM: shutting down")


@pytest.mark.system
def test_sigterm_with_a_thousand_connections(tmp_path) -> None:
    """
    SIGTERM with 1,000 open connections, each with a message in flight:
    every client gets close 1001 with a clean closing handshake, preceded
    by the echo of its message exactly when the server had received it (as
    its close line counts), and twistd exits 0.
    """
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * count), hard))
    daemon = start_daemon(tmp_path, "--shutdown-timeout", "20")
    port = daemon.port
    url = f"ws://127.0.0.1:{port}/socket"

    async def connect_all() -> dict[int, Any]:
        connections = {}

        async def one(i: int) -> None:
            ws = await connect_async(url, open_timeout=DEADLINE, ping_interval=None)
            connections[i] = ws
            await ws.send(f"first {i}")
            assert await asyncio.wait_for(ws.recv(), DEADLINE) == f"first {i}"

        # In batches: the listen backlog is 50.
        for start in range(0, count, 50):
            batch = range(start, min(start + 50, count))
            await asyncio.wait_for(asyncio.gather(*map(one, batch)), DEADLINE)
        return connections

    async def outcome(i: int, ws: Any) -> tuple[int, list[str], int | None, int]:
        port = ws.local_address[1]
        received = []
        try:
            while True:
                received.append(await asyncio.wait_for(ws.recv(), DEADLINE))
        except ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), DEADLINE)
        return i, received, ws.close_code, port

    async def scenario() -> list[tuple[int, list[str], int | None, int]]:
        connections = await connect_all()
        assert len(connections) == count
        for i, ws in connections.items():
            await ws.send(f"last {i}")
        daemon.terminate()
        return await asyncio.gather(*(outcome(i, ws) for i, ws in connections.items()))

    outcomes = asyncio.run(scenario())
    assert daemon.process.wait(timeout=DEADLINE) == 0
    line = daemon.wait_for("s for 1000 connections to close")
    assert "waiting up to 20.0 s" in line
    # What the server received and sent of each connection, by client port.
    counted = {
        int(port): (int(received), int(sent))
        for port, received, sent in re.findall(
            r"close tcp4:127\.0\.0\.1:(\d+) .* messages=(\d+)/(\d+)", daemon.whole_log()
        )
    }
    echoed = 0
    for i, received, code, port in outcomes:
        assert code == 1001, (i, received, code)
        # "first" was echoed before; "last" is echoed iff it arrived.
        arrived = counted[port][0] - 1
        assert counted[port] == (1 + arrived, 1 + arrived), (i, counted[port])
        assert received == [f"last {i}"] * arrived, (i, received, counted[port])
        echoed += arrived
    print(f"{echoed} of {count} in-flight messages echoed before close 1001")


class DrainDelayTests(TestCase):
    def test_ready_then_draining(self) -> None:
        """
        With a drain delay, stopping turns /readyz to 503 at once but keeps
        accepting upgrades until the delay is over; then the clients are
        closed with the close code chosen, and the stop completes.
        """
        from twisted.internet.task import Clock

        from wsecho.daemon.service import EchoService

        clock = Clock()
        site = make_site(EchoSettings())
        factory = site.context.registry
        closed = []
        factory.drain = lambda timeout, clock, code: closed.append(code)  # type: ignore[method-assign]
        service = EchoService(site, 5, clock, drain_delay=4, close_code=1012)
        service.startService = lambda: None  # type: ignore[method-assign]
        stopped = service.stopService()
        self.assertEqual((factory.ready, factory.draining, closed), (False, False, []))
        clock.advance(3.9)
        self.assertFalse(factory.draining)
        clock.advance(0.1)
        self.assertEqual((factory.draining, closed), (True, [1012]))
        self.assertIsNone(self.successResultOf(stopped))


@pytest.mark.system
@pytest.mark.parametrize("workers", ["1", "2"])
def test_drain_delay(tmp_path, workers) -> None:
    """
    With --drain-delay 5, after SIGTERM /readyz answers 503 while a new
    client is still echoed; held clients get 1012 (--shutdown-close-code)
    only once the delay is over, and twistd exits 0; with --workers too.
    """
    import time
    import urllib.error
    import urllib.request

    from support import poll_until

    daemon = start_daemon(
        tmp_path,
        "--drain-delay",
        "5",
        "--shutdown-close-code",
        "1012",
        "--workers",
        workers,
    )
    base = f"127.0.0.1:{daemon.port}"

    def readyz() -> int:
        try:
            with urllib.request.urlopen(f"http://{base}/readyz", timeout=DEADLINE) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    poll_until(lambda: readyz() == 200)
    with connect(f"ws://{base}/socket", open_timeout=DEADLINE) as held:
        daemon.terminate()
        signalled = time.monotonic()
        poll_until(lambda: readyz() == 503)
        with connect(f"ws://{base}/socket", open_timeout=DEADLINE) as late:
            late.send("still served")
            assert late.recv(timeout=DEADLINE) == "still served"
        with pytest.raises(ConnectionClosed) as closed:
            held.recv(timeout=DEADLINE)
        assert closed.value.rcvd.code == 1012
        assert time.monotonic() - signalled >= 5
    assert daemon.process.wait(timeout=DEADLINE) == 0


def test_drained_a_turn_after_the_last_connection_is_forgotten() -> None:
    """
    The drain fires in the reactor's next turn, not from within the last
    connection's own connectionLost: what it resumes (the reactor's shutdown,
    which loses every transport) would otherwise pull that connection's TLS
    state from under the read it runs in (over HTTP/2 and TLS).
    """
    from twisted.internet.task import Clock

    registry = make_site(EchoSettings()).context.registry
    protocol: Any = type("Stub", (), {"going_away": lambda self, code: None})()
    registry.connections.add(protocol)
    clock = Clock()
    drained = registry.drain(10, clock)
    fired: list[object] = []
    drained.addCallback(fired.append)
    registry.forget(protocol)
    assert fired == []
    clock.advance(0)
    assert fired == [None]
    assert not clock.getDelayedCalls()
