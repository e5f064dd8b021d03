"""
wsecho's site on a real loopback socket, driven by clients this project did
not write: the websockets library and raw bytes.
"""

import select
import socket

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

from support import DEADLINE
from support.site import serve
from support.wire import frame, raw_http, read_frame, upgrade
from wsecho.settings import EchoSettings


def silent_client(port: int) -> bytes:
    """
    Complete the opening handshake, then only read, answering nothing,
    until the server closes or drops the connection; return what it sent.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(upgrade())
        received = b""
        try:
            while chunk := s.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # dropped: aborted, not closed
        return received


def echo_once(port: int, message="hi", **options):
    """
    In a thread: connect with websockets, send one message and return its
    echo and the (closed) connection.
    """

    def run():
        url = f"ws://127.0.0.1:{port}/socket"
        with connect(url, open_timeout=DEADLINE, **options) as ws:
            ws.send(message)
            return ws.recv(timeout=DEADLINE), ws

    return deferToThread(run)


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


class EchoOverSocketsTests(TestCase):
    def setUp(self) -> None:
        self.port, self.connections = serve(self)
        self.url = f"ws://127.0.0.1:{self.port}/socket"

    def exchange(self, messages, **options):
        def run():
            with connect(self.url, open_timeout=DEADLINE, **options) as ws:
                echoes = []
                for message in messages:
                    ws.send(message)
                    echoes.append(ws.recv(timeout=DEADLINE))
                return echoes, ws.response

        return deferToThread(run)

    async def test_text_and_binary_with_compression(self) -> None:
        """
        A websockets client gets text back as str and binary as bytes, with
        permessage-deflate negotiated, and the Server header names no
        version.
        """
        sent = ["Hello, world!", b"\x00\x01\xff" * 1000, "h\u00e9llo" * 10_000, b""]
        echoes, response = await self.exchange(sent)
        self.assertEqual(echoes, sent)
        self.assertEqual([type(e) for e in echoes], [str, bytes, str, bytes])
        self.assertIn(
            "permessage-deflate", response.headers["Sec-WebSocket-Extensions"]
        )
        self.assertEqual(response.headers["Server"], "wsecho")

    async def test_without_compression(self) -> None:
        """
        A client that offers no compression gets plain echoes.
        """
        sent = ["Hello, world!", b"\x00" * 100_000]
        echoes, response = await self.exchange(sent, compression=None)
        self.assertEqual(echoes, sent)
        self.assertNotIn("Sec-WebSocket-Extensions", response.headers)

    async def test_compression_parameters(self) -> None:
        """
        A client's permessage-deflate parameters are honoured.
        """
        sent = ["x" * 100_000, "y" * 10]
        for extension in (
            ClientPerMessageDeflateFactory(
                server_max_window_bits=9, client_max_window_bits=9
            ),
            ClientPerMessageDeflateFactory(
                server_no_context_takeover=True, client_no_context_takeover=True
            ),
        ):
            echoes, response = await self.exchange(
                sent, extensions=[extension], compression=None
            )
            self.assertEqual(echoes, sent)
            self.assertIn(
                "permessage-deflate", response.headers["Sec-WebSocket-Extensions"]
            )

    async def test_fragmented_message(self) -> None:
        """
        A message sent in fragments comes back whole.
        """

        def run():
            with connect(self.url, open_timeout=DEADLINE) as ws:
                ws.send(iter(["frag", "ment", "ed"]))
                ws.send(iter([b"\x01", b"\x02"]))
                return [ws.recv(timeout=DEADLINE), ws.recv(timeout=DEADLINE)]

        self.assertEqual(await deferToThread(run), ["fragmented", b"\x01\x02"])

    async def test_same_origin_and_cross_origin(self) -> None:
        """
        A page of the server's own origin connects; another origin gets 403.
        """
        echoes, _ = await self.exchange(["hi"], origin=f"http://127.0.0.1:{self.port}")
        self.assertEqual(echoes, ["hi"])
        with self.assertRaises(InvalidStatus) as raised:
            await self.exchange(["hi"], origin="http://evil.example")
        self.assertEqual(raised.exception.response.status_code, 403)

    async def test_get_without_upgrade(self) -> None:
        """
        A plain GET /socket gets 426 and says why; the index page gets 200.
        """
        get = b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        response = await deferToThread(raw_http, self.port, get)
        self.assertEqual(status(response), 426)
        self.assertIn(b"\r\nUpgrade: websocket\r\n", response)
        self.assertIn(b"\r\nServer: wsecho\r\n", response)
        self.assertIn(b"WebSocket endpoint", response)
        get = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        response = await deferToThread(raw_http, self.port, get)
        self.assertEqual(status(response), 200)
        self.assertIn(b"\r\nServer: wsecho\r\n", response)

    async def test_invalid_handshakes(self) -> None:
        """
        Invalid handshakes get the 4xx status the README gives for each
        (400 for a bad handshake or garbage, 403 for an origin that is no
        URL, 405 for another method), never a 500, and nothing breaks.
        """
        requests = [
            (upgrade(Sec_WebSocket_Version="7"), 426),
            (upgrade(Sec_WebSocket_Version=None), 400),
            (upgrade(Sec_WebSocket_Key=None), 400),
            (upgrade(Sec_WebSocket_Key="short"), 400),
            (upgrade(Connection="keep-alive"), 400),
            (upgrade(Origin="not an origin"), 403),
            (upgrade().replace(b"GET", b"POST", 1), 405),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
            (
                b"GET /socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"broken header line\r\n\r\n",
                400,
            ),
        ]
        for request, expected in requests:
            response = await deferToThread(raw_http, self.port, request)
            self.assertEqual(status(response), expected, (request, response))
        echoes, _ = await self.exchange(["still fine"])
        self.assertEqual(echoes, ["still fine"])

    async def test_protocol_error_leaves_others_alone(self) -> None:
        """
        A client sending an unmasked frame is closed with 1002 while another
        client's echoes go on.
        """

        def run():
            with connect(self.url, open_timeout=DEADLINE) as good:
                good.send("before")
                before = good.recv(timeout=DEADLINE)
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=DEADLINE
                ) as bad:
                    bad.sendall(upgrade())
                    handshake = bad.recv(4096)
                    bad.sendall(b"\x81\x02hi")  # a text frame without a mask
                    reply = bad.recv(4096)
                good.send("after")
                return before, handshake, reply, good.recv(timeout=DEADLINE)

        before, handshake, reply, after = await deferToThread(run)
        self.assertEqual(status(handshake), 101)
        self.assertEqual(reply[:1], b"\x88")  # a close frame ...
        self.assertEqual(int.from_bytes(reply[2:4], "big"), 1002)  # ... 1002
        self.assertEqual((before, after), ("before", "after"))


class LimitsOverSocketsTests(TestCase):
    async def test_limit_counts_decompressed_size(self) -> None:
        """
        A message that compresses to almost nothing but inflates past
        --max-message-size is closed with 1009; one under it is echoed.
        """
        port, _ = serve(self, EchoSettings(max_message_size=1024 * 1024))

        def run():
            with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
                ws.send(b"\x00" * (1024 * 1024))
                echo = ws.recv(timeout=DEADLINE)
                ws.send(b"\x00" * (1024 * 1024 + 1))
                try:
                    unexpected = ws.recv(timeout=DEADLINE)
                except ConnectionClosedError as e:
                    return echo, e.rcvd.code
            return echo, f"echoed {len(unexpected)} bytes"

        echo, code = await deferToThread(run)
        self.assertEqual(len(echo), 1024 * 1024)
        self.assertEqual(code, 1009)

    async def test_no_compression(self) -> None:
        """
        With --no-compression a client's permessage-deflate offer is declined
        and the echo still works.
        """
        port, _ = serve(self, EchoSettings(compression=False))
        echo, ws = await echo_once(port, "plain")
        self.assertEqual(echo, "plain")
        self.assertNotIn("Sec-WebSocket-Extensions", ws.response.headers)

    async def test_subprotocols(self) -> None:
        """
        With --subprotocol chat --subprotocol superchat the server selects
        the client's first supported offer, and accepts a client offering
        none.
        """
        port, _ = serve(self, EchoSettings(subprotocols=("chat", "superchat")))
        echo, ws = await echo_once(port, subprotocols=["superchat", "chat"])
        self.assertEqual((echo, ws.subprotocol), ("hi", "superchat"))
        echo, ws = await echo_once(port)
        self.assertEqual((echo, ws.subprotocol), ("hi", None))

    async def test_allowed_origin(self) -> None:
        """
        --allowed-origin patterns let other origins in; '*' lets all in.
        """
        for allowed, origin in (
            ("https://*.example.com", "https://app.example.com"),
            ("*", "http://anything.test"),
        ):
            port, _ = serve(self, EchoSettings(allowed_origins=(allowed,)))
            echo, _ = await echo_once(port, origin=origin)
            self.assertEqual(echo, "hi")


class PipelinedFramesTests(TestCase):
    async def test_frames_sent_with_the_upgrade(self) -> None:
        """
        Frames that arrive in the same read as the upgrade request (a client
        that did not wait for the 101) are echoed, not lost.
        """
        port, _ = serve(self)

        def pipelined():
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
                s.sendall(upgrade() + frame(1, b"early") + frame(2, b"\x00\x01"))
                reader = s.makefile("rb")
                while reader.readline() not in (b"\r\n", b""):
                    pass
                first, second = read_frame(reader), read_frame(reader)
                s.sendall(frame(8, (1000).to_bytes(2, "big")))
                return first, second, read_frame(reader)

        first, second, closing = await deferToThread(pipelined)
        self.assertEqual((first, second), ((1, b"early"), (2, b"\x00\x01")))
        self.assertEqual(closing[0], 8)


class TimeoutTests(TestCase):
    async def test_slowloris_is_cut_at_the_deadline(self) -> None:
        """
        A client that dribbles its headers a byte at a time, never idle long
        enough for an idle timeout, is cut at --open-handshake-timeout.
        """
        port, _ = serve(self, EchoSettings(open_handshake_timeout=1))

        def dribble():
            header = b"X-Slow: " + b"a" * 100_000
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
                s.sendall(b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                sent = 0
                for byte in header:
                    try:
                        s.sendall(bytes([byte]))
                    except OSError:
                        break  # reset: the server gave up on us
                    sent += 1
                    # The attack's pace, not a synchronisation: the server
                    # must not wait for the (endless) header to end.
                    readable, _, _ = select.select([s], [], [], 0.05)
                    if readable:
                        break
                return sent, s.makefile("rb").read()

        sent, response = await deferToThread(dribble)
        self.assertEqual(status(response), 408)
        self.assertLess(sent, 16384)


class KeepaliveTests(TestCase):
    async def test_silent_peer_is_dropped(self) -> None:
        """
        A peer that never answers the keepalive ping is dropped after
        --ping-timeout, and a peer that answers stays.
        """
        port, _ = serve(self, EchoSettings(ping_interval=1, ping_timeout=2))

        def answering():
            # Answer two pings with pongs, then check the echo still works.
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
                s.sendall(upgrade())
                reader = s.makefile("rb")
                while reader.readline() not in (b"\r\n", b""):
                    pass
                pings = 0
                while pings < 2:
                    opcode, payload = read_frame(reader)
                    assert opcode == 0x9, opcode
                    pings += 1
                    s.sendall(frame(0xA, payload))
                s.sendall(frame(0x1, b"still here"))
                return read_frame(reader)

        received = await deferToThread(silent_client, port)
        self.assertEqual(status(received), 101)
        self.assertIn(b"\r\n\r\n\x89", received)  # a ping came, then the end
        self.assertEqual(await deferToThread(answering), (0x1, b"still here"))
