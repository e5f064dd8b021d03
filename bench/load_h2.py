"""
The benchmark's load generator over HTTP/2: WebSockets opened with RFC
8441's extended CONNECT (the h2 library, prior knowledge on a plain port),
small text echoes ping-pong on each, every echo compared with what was sent.
The result is one JSON object on standard output, as bench/load.py's.

    python bench/load_h2.py ws://127.0.0.1:8181/socket --scenario S9 --seconds 5

Scenarios (see bench/run.py):
    S9   64 h2 connections, one WebSocket each, ping-pong, 32-byte text
         (S2 over h2)
    S9m  8 h2 connections, 8 WebSockets each, ping-pong, 32-byte text
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions

SCENARIOS = {"S9": (64, 1), "S9m": (8, 8)}  # connections, WebSockets on each
PAYLOAD = b"Hello, world! The quick brown fox"[:32]


def masked_text(payload: bytes) -> bytes:
    """
    A final, masked text frame (RFC 6455 5.3: clients mask, over h2 too).
    """
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + key + body


class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.mismatches = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []


class Connection(asyncio.Protocol):
    """
    One h2 connection carrying C{streams} WebSockets, each with one echo in
    flight until the deadline, then a close (1000) and END_STREAM.
    """

    def __init__(self, authority: str, path: str, streams: int, stats: Stats) -> None:
        self.authority = authority
        self.path = path
        self.streams = streams
        self.stats = stats
        self.until = float("inf")
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        loop = asyncio.get_running_loop()
        self.opened = loop.create_future()
        self.done = loop.create_future()
        self.open: set[int] = set()
        self.closing: set[int] = set()
        self.buffers: dict[int, bytes] = {}
        self.sent: dict[int, float] = {}
        self.frame = masked_text(PAYLOAD)
        self.expected = bytes([0x81, len(PAYLOAD)]) + PAYLOAD

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def fail(self, why: str) -> None:
        self.stats.errors.append(why)
        for future in (self.opened, self.done):
            if not future.done():
                future.set_result(None)
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged) and not self.buffers:
                if self.conn.remote_settings.enable_connect_protocol != 1:
                    self.fail("no SETTINGS_ENABLE_CONNECT_PROTOCOL")
                    return
                for _ in range(self.streams):
                    stream = self.conn.get_next_available_stream_id()
                    self.buffers[stream] = b""
                    self.conn.send_headers(
                        stream,
                        [
                            (":method", "CONNECT"),
                            (":protocol", "websocket"),
                            (":scheme", "http"),
                            (":path", self.path),
                            (":authority", self.authority),
                            ("sec-websocket-version", "13"),
                        ],
                    )
            elif isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers).get(":status")
                if status != "200":
                    self.fail(f"status {status}")
                    return
                self.open.add(event.stream_id)
                if len(self.open) == self.streams and not self.opened.done():
                    self.opened.set_result(None)
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
                self.received(event.stream_id, event.data)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.fail(f"stream {event.stream_id} reset ({event.error_code})")
                return
        self.flush()

    def start(self, until: float) -> None:
        self.until = until
        for stream in self.open:
            self.send(stream)
        self.flush()

    def send(self, stream: int) -> None:
        self.sent[stream] = time.perf_counter()
        self.conn.send_data(stream, self.frame)

    def received(self, stream: int, data: bytes) -> None:
        buffer = self.buffers[stream] + data
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            if length >= 126 or len(buffer) < 2 + length:
                if length >= 126:
                    self.stats.mismatches += 1
                    buffer = b""
                break
            frame, buffer = buffer[: 2 + length], buffer[2 + length :]
            if frame[0] & 0x0F == 0x8:  # the server's close: answered
                continue
            now = time.perf_counter()
            self.stats.messages += 1
            self.stats.latencies.append(now - self.sent[stream])
            if frame != self.expected:
                self.stats.mismatches += 1
            if now < self.until:
                self.send(stream)
            elif stream not in self.closing:
                self.closing.add(stream)
                # Close 1000, masked with a zero key (any key will do).
                self.conn.send_data(stream, b"\x88\x82\x00\x00\x00\x00\x03\xe8")
        self.buffers[stream] = buffer

    def ended(self, stream: int) -> None:
        # The server ended its side after the closing handshake: end ours.
        self.open.discard(stream)
        try:
            self.conn.end_stream(stream)
        except h2.exceptions.StreamClosedError:
            pass
        if not self.open and not self.done.done():
            self.conn.close_connection()
            self.flush()
            self.transport.close()
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if self.open:
                self.stats.errors.append(f"connection lost: {exc}")
            self.done.set_result(None)
        if not self.opened.done():
            self.opened.set_result(None)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * fraction))]


async def echo(url: str, connections: int, streams: int, seconds: float) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stats = Stats()
    loop = asyncio.get_running_loop()
    made = []
    # Connect all first, then start the clock for all.
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: Connection(f"{host}:{port}", parts.path or "/", streams, stats),
            host,
            port,
        )
        made.append(protocol)
    await asyncio.wait_for(asyncio.gather(*(c.opened for c in made)), 60)
    began = time.perf_counter()
    for connection in made:
        connection.start(began + seconds)
    await asyncio.wait_for(asyncio.gather(*(c.done for c in made)), seconds + 60)
    elapsed = time.perf_counter() - began
    latencies = sorted(stats.latencies)
    return {
        "messages": stats.messages,
        "mismatches": stats.mismatches,
        "errors": stats.errors[:5],
        "seconds": elapsed,
        "rate": stats.messages / elapsed,
        "mb_per_s": stats.messages * len(PAYLOAD) / elapsed / 1e6,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="ws://host:port/path (HTTP/2 by prior knowledge)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="S9")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    connections, streams = SCENARIOS[args.scenario]
    result = asyncio.run(echo(args.url, connections, streams, args.seconds))
    result["scenario"] = args.scenario
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
