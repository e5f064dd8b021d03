"""
The echo protocol in memory: Autobahn's client against wsecho's server
protocol over in-memory transports, no sockets.
"""

from autobahn.twisted.testing import create_memory_agent, create_pumper
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import TestCase

from support import poll
from wsecho.settings import EchoSettings
from wsecho.ws.factory import make_factory


class EchoTests(TestCase):
    def setUp(self) -> None:
        self.pumper = create_pumper()
        self.reactor = MemoryReactorClock()
        self.servers = []
        return self.pumper.start()

    async def tearDown(self) -> None:
        # The server side's timers run on the real reactor: wait for each
        # server protocol to see its connection lost, which cancels them.
        await poll(lambda: all(s.state == s.STATE_CLOSED for s in self.servers))
        await self.pumper.stop()

    async def connect(self, settings: EchoSettings | None = None, **options):
        factory = make_factory(settings or EchoSettings())
        # No Site stops this factory: its heap-trimming timer is ours to stop.
        self.addCleanup(factory.context.stop)

        def server():
            protocol = factory.buildProtocol(None)
            self.servers.append(protocol)
            return protocol

        agent = create_memory_agent(self.reactor, self.pumper, server)
        client = await agent.open("ws://localhost:8181/socket", options)
        client.received = []
        client.on(
            "message",
            lambda payload, is_binary: client.received.append((payload, is_binary)),
        )
        return client

    async def echoes(self, client, count: int) -> list:
        """
        Wait for C{count} messages (Autobahn drops data that arrives after
        its close frame is sent, so wait before closing).
        """
        await poll(lambda: len(client.received) >= count)
        return client.received

    async def close(self, client) -> None:
        client.sendClose(1000)
        await client.is_closed

    async def test_text_and_binary(self) -> None:
        """
        Every message comes back with its own type: text as text, binary as
        binary, the empty message included.
        """
        client = await self.connect()
        sent = [
            (b"Hello, world!", False),
            (bytes(range(256)), True),
            (b"", False),
            (b"", True),
            ("h\u00e9llo \U0001f600".encode(), False),
        ]
        for payload, isBinary in sent:
            client.sendMessage(payload, isBinary)
        self.assertEqual(await self.echoes(client, len(sent)), sent)
        await self.close(client)

    async def test_fragmented_and_large(self) -> None:
        """
        A message sent in many fragments comes back whole, as does a large one.
        """
        client = await self.connect()
        large = bytes(range(256)) * 4096  # 1 MiB
        client.sendMessage(b"x" * 10_000, True, fragmentSize=7)
        client.sendMessage(large, True)
        self.assertEqual(
            await self.echoes(client, 2), [(b"x" * 10_000, True), (large, True)]
        )
        await self.close(client)

    async def test_subprotocol(self) -> None:
        """
        The server selects the first of the client's offers it supports, and
        a client offering nothing it knows still connects without one.
        """
        settings = EchoSettings(subprotocols=("chat", "superchat"))
        client = await self.connect(
            settings, protocols=["v2.other", "superchat", "chat"]
        )
        self.assertEqual(client.websocket_protocol_in_use, "superchat")
        await self.close(client)
        client = await self.connect(settings, protocols=["other"])
        self.assertIsNone(client.websocket_protocol_in_use)
        await self.close(client)

    async def test_message_too_big(self) -> None:
        """
        A message over --max-message-size is refused with close code 1009.
        """
        client = await self.connect(
            EchoSettings(max_message_size=1000, max_frame_size=1000)
        )
        client.sendMessage(b"x" * 1000, True)
        client.sendMessage(b"x" * 600, True, fragmentSize=300)
        client.sendMessage(b"y" * 1001, True, fragmentSize=500)
        await client.is_closed
        self.assertEqual(client.received, [(b"x" * 1000, True), (b"x" * 600, True)])
        self.assertEqual(client.remoteCloseCode, 1009)

    async def test_message_after_close_frame(self) -> None:
        """
        A message that arrives after the server's close frame went out is
        dropped without an error (RFC 6455 allows no data after it).
        """
        client = await self.connect(EchoSettings(max_message_size=10))
        client.sendMessage(b"x" * 11, True)  # closed with 1009 by the echo
        client.sendMessage(b"late", True)
        await client.is_closed
        self.assertEqual(client.received, [])
        self.assertEqual(client.remoteCloseCode, 1009)

    async def test_frame_too_big(self) -> None:
        """
        A frame over --max-frame-size is refused with 1009, even in a
        message under the message limit.
        """
        client = await self.connect(EchoSettings(max_frame_size=1000))
        client.sendMessage(b"x" * 1000, True)
        client.sendMessage(b"y" * 1001, True)
        await client.is_closed
        self.assertEqual(client.received, [(b"x" * 1000, True)])
        self.assertEqual(client.remoteCloseCode, 1009)

    async def test_logs_each_connection_once(self) -> None:
        """
        A connection is logged in one line when it closes: its peer and
        what was agreed, the close code and reason. Its opening and its
        messages are not logged by default.
        """
        with capturedLogs() as events:
            client = await self.connect(
                EchoSettings(subprotocols=("chat",)), protocols=["chat"]
            )
            client.sendMessage(b"secret", False)
            await self.echoes(client, 1)
            client.sendClose(4001, "bye now")
            await client.is_closed
            await poll(
                lambda: any(
                    e.get("log_format", "").startswith("close ") for e in events
                )
            )
        formats = [e.get("log_format", "") for e in events]
        self.assertFalse(any(f.startswith("open ") for f in formats), formats)
        [close] = [e for e in events if e.get("log_format", "").startswith("close ")]
        self.assertEqual(
            (close["code"], close["reason"], close["clean"]), (4001, "bye now", True)
        )
        self.assertEqual(
            (close["subprotocol"], close["extensions"], close["origin"]),
            ("chat", "-", "-"),
        )
        self.assertFalse(any("secret" in repr(e) for e in events))

    async def test_metrics_count_unless_turned_off(self) -> None:
        """
        The echo counts what it echoes; with --no-metrics it echoes the
        same, counting nothing.
        """
        for metrics, counted in ((True, 1.0), (False, 0.0)):
            client = await self.connect(EchoSettings(metrics=metrics))
            client.sendMessage(b"hi", False)
            client.sendMessage(b"\x00\x01", True)
            await self.echoes(client, 2)
            self.assertEqual(client.received, [(b"hi", False), (b"\x00\x01", True)])
            registry = self.servers[-1].factory.context.metrics.registry
            for kind in ("text", "binary"):
                self.assertEqual(
                    registry.get_sample_value("wsecho_messages_total", {"type": kind}),
                    counted,
                )
            await self.close(client)

    async def test_verbose_logs_messages(self) -> None:
        """
        With --verbose each message is logged, truncated, and each
        connection's opening too.
        """
        with capturedLogs() as events:
            client = await self.connect(EchoSettings(verbose=True))
            client.sendMessage(b"a" * 1000, False)
            await self.echoes(client, 1)
            await self.close(client)
        [message] = [
            e for e in events if e.get("log_format", "").startswith("message ")
        ]
        self.assertEqual((message["kind"], message["size"]), ("text", 1000))
        self.assertEqual(message["preview"], "a" * 120)
        self.assertEqual(client.received, [(b"a" * 1000, False)])
        [opened] = [e for e in events if e.get("log_format", "").startswith("open ")]
        self.assertEqual(opened["peer"], self.servers[-1].peer)
