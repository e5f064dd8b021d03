"""
The benchmark's load generator: WebSocket clients on picows (a Cython
WebSocket library for asyncio), or raw TCP for the TCP echo peer.

Each scenario is bounded in time, and every echo is compared with what was
sent (after decompression, with permessage-deflate). The result is one JSON
object on standard output.

    python bench/load.py ws://127.0.0.1:8181/socket --scenario S2 --seconds 5

Scenarios (see bench/run.py for the whole benchmark):
    S1  1 connection, ping-pong, 32-byte text
    S2  64 connections, ping-pong, 32-byte text
    S3  16 connections, ping-pong, 64 KiB binary
    S4  8 connections, 32 messages in flight each, 1 KiB text
    S5  2,000 opening and closing handshakes, 16 at a time
    S6  10,000 idle connections: the server's memory per connection
    S7a, S7b  S2 and S3 with permessage-deflate offered as browsers do
    S7c       S7a with gorilla/websocket's offer (no context takeover)
    S7d, S7e  S7a and S7c with 1 KiB messages
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, ws_connect


@dataclass(frozen=True)
class Scenario:
    kind: str  # "echo", "burst", "handshakes" or "idle"
    connections: int = 1
    size: int = 32
    binary: bool = False
    in_flight: int = 1
    deflate: bool = False
    total: int = 0  # handshakes to make
    gorilla: bool = False  # gorilla's deflate offer, not a browser's
    attackers: int = 0  # S8: connections sending compressed bombs meanwhile


SCENARIOS = {
    "S1": Scenario("echo", connections=1),
    "S2": Scenario("echo", connections=64),
    "S3": Scenario("echo", connections=16, size=64 * 1024, binary=True),
    "S4": Scenario("echo", connections=8, size=1024, in_flight=32),
    "S5": Scenario("handshakes", connections=16, total=2000),
    "S6": Scenario("idle", connections=10_000),
    "S7a": Scenario("echo", connections=64, deflate=True),
    "S7b": Scenario("echo", connections=16, size=64 * 1024, binary=True, deflate=True),
    "S7c": Scenario("echo", connections=64, deflate=True, gorilla=True),
    "S7d": Scenario("echo", connections=64, size=1024, deflate=True),
    "S7e": Scenario("echo", connections=64, size=1024, deflate=True, gorilla=True),
    # A control client's ping-pong while 4 connections send compressed
    # messages of 16 MiB of zeros (16 KB on the wire), 8 in flight each.
    "S8": Scenario("burst", connections=1, attackers=4),
}

# S8's attack: a message that inflates a thousandfold, and how many of them
# each attacker keeps in flight.
BOMB_SIZE = 16 * 1024 * 1024
BOMBS_IN_FLIGHT = 8

# Browsers offer this: context takeover both ways, the client's window
# negotiable.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
# gorilla/websocket's client offers (and needs) no context takeover.
GORILLA_OFFER = (
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
)
DEFLATE_TAIL = b"\x00\x00\xff\xff"


def payload_for(scenario: Scenario) -> bytes:
    """
    Text: ASCII words; binary: half random, half a repeated pattern (about
    2:1 under deflate).
    """
    if not scenario.binary:
        words = b"Hello, world! The quick brown fox jumps over the lazy dog. "
        return (words * (scenario.size // len(words) + 1))[: scenario.size]
    half = scenario.size // 2
    pattern = bytes(range(256)) * (half // 256 + 1)
    noise = random.Random(6455).randbytes(scenario.size - half)
    return noise + pattern[:half]


def compress(payload: bytes) -> bytes:
    """
    A message compressed by a fresh compressor: valid on any connection,
    whatever context the server keeps, since it refers to nothing before it.
    """
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(DEFLATE_TAIL)
    return data[: -len(DEFLATE_TAIL)]


class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.mismatches = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.compressed = 0  # echoes that came back compressed


class Echoer(WSListener):
    """
    One connection: keeps C{in_flight} messages outstanding until the
    deadline, checking each echo.
    """

    def __init__(self, scenario: Scenario, payload: bytes, stats: Stats, until: float):
        self.scenario = scenario
        self.payload = payload
        self.kind = WSMsgType.BINARY if scenario.binary else WSMsgType.TEXT
        self.wire = compress(payload) if scenario.deflate else payload
        self.stats = stats
        self.until = until
        self.sent: deque[float] = deque()
        self.parts: list[bytes] = []
        self.first_rsv1 = False
        self.inflater: zlib._Decompress | None = None
        self.deflated = False  # set from the handshake response
        self.done = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        for _ in range(self.scenario.in_flight):
            self.send()

    def send(self) -> None:
        self.sent.append(time.perf_counter())
        self.transport.send(self.kind, self.wire, rsv1=self.deflated)

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self.finish(f"server closed: {frame.get_close_code()}")
            return
        if kind == WSMsgType.PING:
            transport.send(WSMsgType.PONG, frame.get_payload_as_bytes())
            return
        if kind == WSMsgType.PONG:
            return
        if kind != WSMsgType.CONTINUATION:
            self.message_kind = kind
            self.first_rsv1 = frame.rsv1
        self.parts.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        message = b"".join(self.parts) if len(self.parts) > 1 else self.parts[0]
        self.parts = []
        self.received(message)

    def received(self, message: bytes) -> None:
        now = time.perf_counter()
        stats = self.stats
        if self.first_rsv1:
            stats.compressed += 1
            if self.inflater is None or self.inflater.eof:
                self.inflater = zlib.decompressobj(wbits=-15)
            message = self.inflater.decompress(message + DEFLATE_TAIL)
        if message != self.payload or self.message_kind != self.kind:
            stats.mismatches += 1
        stats.messages += 1
        stats.bytes += len(message)
        stats.latencies.append(now - self.sent.popleft())
        if now < self.until:
            self.send()
        elif not self.sent:
            self.finish(None)

    def finish(self, error: str | None) -> None:
        if error is not None:
            self.stats.errors.append(error)
        if not self.done.done():
            self.done.set_result(None)
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.stats.errors.append("disconnected")
            self.done.set_result(None)


class RawEchoer(asyncio.Protocol):
    """
    The same over raw TCP, for the TCP echo: a message is C{size} bytes.
    """

    def __init__(self, scenario: Scenario, payload: bytes, stats: Stats, until: float):
        self.scenario = scenario
        self.payload = payload
        self.stats = stats
        self.until = until
        self.sent: deque[float] = deque()
        self.buffer = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        for _ in range(self.scenario.in_flight):
            self.send()

    def send(self) -> None:
        self.sent.append(time.perf_counter())
        self.transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        size = len(self.payload)
        while len(self.buffer) >= size:
            now = time.perf_counter()
            if self.buffer[:size] != self.payload:
                self.stats.mismatches += 1
            del self.buffer[:size]
            self.stats.messages += 1
            self.stats.bytes += size
            self.stats.latencies.append(now - self.sent.popleft())
            if now < self.until:
                self.send()
            elif not self.sent:
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.stats.errors.append("disconnected")
            self.done.set_result(None)


async def connect(url: str, factory, deflate: bool = False, offer: str = DEFLATE_OFFER):
    """
    Open a connection; return its listener, told whether the server
    accepted permessage-deflate.
    """
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        _, protocol = await asyncio.get_running_loop().create_connection(
            factory, parts.hostname, parts.port
        )
        return protocol
    headers = {"Sec-WebSocket-Extensions": offer} if deflate else None

    def make(request, response):
        listener = factory()
        accepted = response.headers.get("Sec-WebSocket-Extensions", "")
        listener.deflated = "permessage-deflate" in accepted
        return listener

    _, listener = await ws_connect(
        make, url, extra_headers=headers, websocket_handshake_timeout=30
    )
    return listener


async def echo(url: str, scenario: Scenario, seconds: float) -> dict:
    stats = Stats()
    payload = payload_for(scenario)
    kind = RawEchoer if url.startswith("tcp://") else Echoer
    # Connect all first, then start the clock for all.
    listeners = []
    until = float("inf")
    for _ in range(scenario.connections):
        listeners.append(
            await connect(
                url,
                lambda: kind(scenario, payload, stats, until),
                scenario.deflate,
                GORILLA_OFFER if scenario.gorilla else DEFLATE_OFFER,
            )
        )
    began = time.perf_counter()
    for listener in listeners:
        listener.until = began + seconds
    await asyncio.wait_for(
        asyncio.gather(*(listener.done for listener in listeners)), seconds + 60
    )
    elapsed = time.perf_counter() - began
    latencies = sorted(stats.latencies)
    result = {
        "messages": stats.messages,
        "mismatches": stats.mismatches,
        "errors": stats.errors[:5],
        "seconds": elapsed,
        "rate": stats.messages / elapsed,
        "mb_per_s": stats.bytes / elapsed / 1e6,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }
    if scenario.deflate:
        result["deflate"] = all(getattr(x, "deflated", False) for x in listeners)
        result["compressed_echoes"] = stats.compressed
    return result


def client_frame(first: int, payload: bytes) -> bytes:
    # A masked client frame (a zero mask: the server unmasks all the same).
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + bytes(4) + payload


async def bomber(url: str, until: float) -> int:
    """
    One attacker: compressed bombs, BOMBS_IN_FLIGHT at a time, until
    C{until}; the echoes it got.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0] or b"permessage-deflate" not in head:
        raise RuntimeError("S8: the server did not accept permessage-deflate")
    bomb = client_frame(0xC2, compress(bytes(BOMB_SIZE)))
    echoes = sent = 0
    try:
        while time.perf_counter() < until or echoes < sent:
            while sent - echoes < BOMBS_IN_FLIGHT and time.perf_counter() < until:
                writer.write(bomb)
                sent += 1
            first, length = await reader.readexactly(2)
            length &= 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            await reader.readexactly(length)
            if first & 0x0F == 2:
                echoes += 1
            elif first & 0x0F == 8:
                break
    finally:
        writer.close()
    return echoes


async def burst(url: str, scenario: Scenario, seconds: float) -> dict:
    """
    S8: the control's ping-pong (as S1) while the attackers send bombs for
    the same C{seconds} (each then waits for the echoes it is owed).
    """
    until = time.perf_counter() + seconds
    attack = asyncio.gather(*(bomber(url, until) for _ in range(scenario.attackers)))
    control = Scenario("echo", connections=scenario.connections)
    result = await echo(url, control, seconds)
    bombs = await asyncio.wait_for(attack, 120)
    result["bombs_echoed"] = sum(bombs)
    return result


class Handshaker(WSListener):
    def __init__(self) -> None:
        self.done = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send_close(WSCloseCode.OK)

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def handshakes(url: str, scenario: Scenario, seconds: float) -> dict:
    """
    Open a connection, close it (the closing handshake included), and
    again, C{connections} at a time, C{total} in all or until the time is up.
    """
    made = [0]
    errors: list[str] = []
    began = time.perf_counter()
    deadline = began + seconds

    async def one_by_one() -> None:
        while made[0] < scenario.total and time.perf_counter() < deadline:
            made[0] += 1
            try:
                _, listener = await ws_connect(
                    Handshaker, url, websocket_handshake_timeout=30
                )
                await asyncio.wait_for(listener.done, 30)
            except Exception as e:
                errors.append(repr(e))

    await asyncio.gather(*(one_by_one() for _ in range(scenario.connections)))
    elapsed = time.perf_counter() - began
    return {
        "handshakes": made[0] - len(errors),
        "errors": errors[:5],
        "failed": len(errors),
        "seconds": elapsed,
        "rate": (made[0] - len(errors)) / elapsed,
    }


def rss(pid: int) -> int:
    """
    Resident memory of C{pid} and its children (the workers), in bytes.
    """
    total = 0
    for each in [pid, *children(pid)]:
        with open(f"/proc/{each}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Idle(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type == WSMsgType.PING:
            transport.send(WSMsgType.PONG, frame.get_payload_as_bytes())


async def idle(url: str, scenario: Scenario, seconds: float, pid: int) -> dict:
    """
    Open C{connections} connections, 100 at a time, and leave them idle;
    the server's resident memory before and after gives its cost of one.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss(pid)
    began = time.perf_counter()
    listeners: list[Idle] = []
    errors: list[str] = []
    queue = iter(range(scenario.connections))

    async def opener() -> None:
        for _ in queue:
            try:
                _, listener = await ws_connect(
                    Idle, url, websocket_handshake_timeout=60
                )
                listeners.append(listener)
            except Exception as e:
                errors.append(repr(e))

    await asyncio.wait_for(
        asyncio.gather(*(opener() for _ in range(100))), max(seconds, 120)
    )
    opened = time.perf_counter() - began
    # Let the server settle (a garbage collection, a read of the last
    # handshake) before measuring; bounded.
    await asyncio.sleep(1.0)
    after = rss(pid)
    for listener in listeners:
        listener.transport.disconnect()
    return {
        "connections": len(listeners),
        "errors": errors[:5],
        "failed": len(errors),
        "seconds_to_open": opened,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_connection": (after - before) / max(len(listeners), 1),
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * fraction))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="ws://host:port/path, or tcp://host:port")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="S2")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--connections", type=int, help="instead of the scenario's number"
    )
    parser.add_argument(
        "--total", type=int, help="S5: instead of the scenario's 2,000 handshakes"
    )
    parser.add_argument("--pid", type=int, help="S6: the server's process")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    if args.connections:
        scenario = Scenario(**{**scenario.__dict__, "connections": args.connections})
    if args.total:
        scenario = Scenario(**{**scenario.__dict__, "total": args.total})
    if scenario.kind == "echo":
        run = echo(args.url, scenario, args.seconds)
    elif scenario.kind == "burst":
        run = burst(args.url, scenario, args.seconds)
    elif scenario.kind == "handshakes":
        run = handshakes(args.url, scenario, args.seconds)
    else:
        if args.pid is None:
            parser.error("--pid: S6 measures the server's memory")
        run = idle(args.url, scenario, args.seconds, args.pid)
    result = asyncio.run(run)
    result["scenario"] = args.scenario
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
