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
) -> list[tuple[str, str]]:
    return [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
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
