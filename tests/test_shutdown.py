"""
Shutting down gracefully, and the health checks load balancers poll.
"""

import signal

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from helpers import DEADLINE, free_port, poll, serve, start_daemon
from test_sockets import silent_client, status
from wsecho.echo import EchoSettings
from wsecho.web import make_site


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
        await site.echo_factory.drain(1, reactor)
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
        factory = tracked.wrappedFactory.echo_factory

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
        factory = tracked.wrappedFactory.echo_factory

        client = deferToThread(silent_client, port)
        await poll(lambda: len(factory.connections) == 1)
        await factory.drain(1, reactor)
        received = await client
        self.assertEqual(status(received), 101)
        self.assertIn(b"\x88", received.split(b"\r\n\r\n", 1)[1][:1])  # a close frame


def test_sigterm_closes_clients_and_exits_zero(tmp_path) -> None:
    """
    On SIGTERM the real daemon sends open clients 1001, echoes what they
    sent first, and exits 0.
    """
    import threading

    port = free_port()
    daemon = start_daemon(
        tmp_path, port, "--port", str(port), "--shutdown-timeout", "5"
    )
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
    daemon.process.send_signal(signal.SIGTERM)
    thread.join(DEADLINE)
    assert daemon.process.wait(timeout=DEADLINE) == 0, "".join(daemon.log)
    assert result == {"echo": "last words", "code": 1001}
    daemon.wait_for("SIGTERM: shutting down")
