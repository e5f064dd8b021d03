"""
A raw HTTP/2 client for tests: the h2 state machine over a blocking socket
(or in memory), with just enough to open WebSockets by extended CONNECT
(RFC 8441) and to misbehave on purpose.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    """One WebSocket frame as a client sends it (masked)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def parse_frames(data: bytes) -> tuple[list[tuple[int, bool, bytes]], bytes]:
    """The whole (unmasked) frames at the start of C{data}, and the rest."""
    frames = []
    while len(data) >= 2:
        fin = bool(data[0] & 0x80)
        opcode = data[0] & 0x0F
        size = data[1] & 0x7F
        at = 2
        if size == 126:
            if len(data) < 4:
                break
            size = struct.unpack("!H", data[2:4])[0]
            at = 4
        elif size == 127:
            if len(data) < 10:
                break
            size = struct.unpack("!Q", data[2:10])[0]
            at = 10
        if len(data) < at + size:
            break
        frames.append((opcode, fin, data[at : at + size]))
        data = data[at + size :]
    return frames, data


def messages(frames: list[tuple[int, bool, bytes]]) -> list[tuple[int, bytes]]:
    """Frames put together into (opcode, payload) messages and controls."""
    out = []
    current: list[bytes] = []
    opcode = 0
    for op, fin, payload in frames:
        if op >= 8:
            out.append((op, payload))
            continue
        if op:
            opcode = op
        current.append(payload)
        if fin:
            out.append((opcode, b"".join(current)))
            current = []
    return out


def connect_headers(
    authority: str = "127.0.0.1",
    path: str = "/socket",
    scheme: str = "http",
    extra: list[tuple[str, str]] | None = None,
    version: str = "13",
    protocol: str = "websocket",
) -> list[tuple[str, str]]:
    return [
        (":method", "CONNECT"),
        (":protocol", protocol),
        (":scheme", scheme),
        (":path", path),
        (":authority", authority),
        ("sec-websocket-version", version),
        *(extra or []),
    ]


class H2Client:
    """
    An HTTP/2 client connection over a socket: C{tls} for ALPN h2.
    """

    def __init__(
        self,
        host: str,
        port: int,
        tls: bool = False,
        settings: dict[int, int] | None = None,
        timeout: float = 10.0,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2", "http/1.1"])
            sock = context.wrap_socket(sock, server_hostname=host)
            self.alpn = sock.selected_alpn_protocol()
        self.sock: Any = sock
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.events: list[Any] = []
        self.data: dict[int, bytes] = {}
        self.headers: dict[int, list[tuple[str, str]]] = {}
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}
        self.goaway: Any = None
        self.closed = False
        self.remote_settings: dict[int, int] = {}
        # Streams whose data the client reads (acknowledges): all, unless
        # a test says which.
        self.reading: set[int] | None = None

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def receive(self, until: Any, timeout: float = 10.0) -> bool:
        """Read until C{until()} is true (or the connection closes)."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return bool(until())
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return bool(until())
            except (ConnectionError, OSError):
                data = b""
            if not data:
                self.closed = True
                return bool(until())
            self.handle(self.conn.receive_data(data))
            self.flush()
        return True

    def handle(self, events: list[Any]) -> None:
        for event in events:
            self.events.append(event)
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = list(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data[event.stream_id] = (
                    self.data.get(event.stream_id, b"") + event.data
                )
                if self.reading is None or event.stream_id in self.reading:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset[event.stream_id] = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for code, change in event.changed_settings.items():
                    self.remote_settings[code] = change.new_value

    def settings_received(self) -> bool:
        return self.receive(lambda: bool(self.remote_settings), 5)

    def status(self, stream_id: int) -> str | None:
        return dict(self.headers.get(stream_id, [])).get(":status")

    def get(self, path: str, authority: str = "127.0.0.1") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", path),
                (":authority", authority),
            ],
            end_stream=True,
        )
        self.flush()
        return stream_id

    def websocket(self, **kwargs: Any) -> int:
        """Open a WebSocket (extended CONNECT) and wait for its answer."""
        self.settings_received()
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, connect_headers(**kwargs))
        self.flush()
        self.receive(
            lambda: (
                stream_id in self.headers
                or stream_id in self.reset
                or self.goaway is not None
            )
        )
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        while data:
            window = min(
                self.conn.local_flow_control_window(stream_id),
                self.conn.max_outbound_frame_size,
            )
            if window <= 0:
                self.receive(lambda: self.conn.local_flow_control_window(stream_id) > 0)
                continue
            chunk, data = data[:window], data[window:]
            self.conn.send_data(stream_id, chunk, end_stream=end and not data)
            self.flush()
        if end and not data and False:
            pass

    def messages(
        self, stream_id: int, count: int, timeout: float = 10.0
    ) -> list[tuple[int, bytes]]:
        """Wait for C{count} messages (or controls) on a stream, and take them."""

        def enough() -> bool:
            frames, _ = parse_frames(self.data.get(stream_id, b""))
            return len(messages(frames)) >= count

        self.receive(enough, timeout)
        frames, rest = parse_frames(self.data.get(stream_id, b""))
        got = messages(frames)
        self.data[stream_id] = rest
        return got

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class MemoryH2(H2Client):
    """
    The same client against wsecho's site in this process, on an in-memory
    transport, the HTTP/2 connection's sending loop run on a C{Clock}
    (prior knowledge: the first bytes are the connection preface).
    """

    def __init__(self, site: Any, settings: dict[int, int] | None = None) -> None:
        from twisted.internet.task import Clock

        from .site import connect_in_memory

        self.clock = Clock()
        MemoryH2.made.append(self)
        site.context.clock = self.clock
        self.channel, self.transport = connect_in_memory(site, self.clock)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events = []
        self.data = {}
        self.headers = {}
        self.ended = set()
        self.reset = {}
        self.goaway = None
        self.closed = False
        self.remote_settings = {}
        self.reading = None
        # Everything the server wrote, in order.
        self.received = bytearray()
        self.flush()

    @property
    def server(self) -> Any:
        # The HTTP/2 connection, once the channel handed over to it.
        return self.transport.protocol

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.deliver(out)
        self.pump()

    def deliver(self, data: bytes) -> None:
        """What the client sends, read by the server."""
        self.transport.protocol.dataReceived(data)

    def pump(self) -> None:
        for _ in range(1000):
            self.clock.advance(0)
            data = self.transport.value()
            if not data:
                if not self.clock.getDelayedCalls() or all(
                    c.getTime() > self.clock.seconds()
                    for c in self.clock.getDelayedCalls()
                ):
                    return
                continue
            self.transport.clear()
            self.received += data
            self.handle(self.conn.receive_data(data))
            out = self.conn.data_to_send()
            if out:
                self.deliver(out)
        if self.transport.disconnecting:
            self.closed = True

    def receive(self, until: Any, timeout: float = 0.0) -> bool:
        self.pump()
        return bool(until())

    def close(self) -> None:
        self.transport.loseConnection()

    # Every one made, lost at the end of the test that made it
    # (tests/conftest.py, lose_all).
    made: list[MemoryH2] = []

    @classmethod
    def lose_all(cls) -> bool:
        """
        Lose every connection made so far (their timers stop): whether
        there was one.
        """
        made = bool(cls.made)
        while cls.made:
            cls.made.pop().lose()
        return made

    def lose(self) -> None:
        """The connection is lost: the server hears of it."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        protocol = self.transport.protocol
        if protocol is not None and protocol.transport is not None:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(60)


def raw_frames_client(host: str, port: int, timeout: float = 10.0) -> Any:
    """
    A socket that has sent the HTTP/2 preface and an empty SETTINGS frame,
    for tests that write frames by hand (hyperframe), as no well-behaved
    client would.
    """
    from hyperframe.frame import SettingsFrame

    sock = socket.create_connection((host, port), timeout=timeout)
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    return sock


def read_until_goaway(sock: Any, timeout: float = 10.0) -> tuple[int | None, bool]:
    """
    Read frames until the end of the connection (or C{timeout}): the error
    code of the GOAWAY read, if any, and whether the connection ended. The
    GOAWAY's last stream id is C{read_until_goaway.last_stream_id}.
    """
    from hyperframe.frame import Frame, GoAwayFrame

    buffer = b""
    deadline = time.monotonic() + timeout
    code = None
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            break
        except OSError:
            return code, True
        if not data:
            return code, True
        buffer += data
        while len(buffer) >= 9:
            f, length = Frame.parse_frame_header(memoryview(buffer[:9]))
            if len(buffer) < 9 + length:
                break
            f.parse_body(memoryview(buffer[9 : 9 + length]))
            buffer = buffer[9 + length :]
            if isinstance(f, GoAwayFrame):
                code = f.error_code
                read_until_goaway.last_stream_id = f.last_stream_id  # type: ignore[attr-defined]
    return code, False
