"""
The load generator (work in progress): ping-pong clients on picows (a
Cython WebSocket library), or raw TCP for the TCP echo, in several
processes; every echo is compared with what was sent, every run is
bounded in time.

    python bench/load.py ws://127.0.0.1:8181/socket --connections 64 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from urllib.parse import urlsplit

from picows import WSListener, WSMsgType, WSTransport, ws_connect


class PingPong(WSListener):
    def __init__(self, payload: bytes, binary: bool, until: float, stats: dict):
        self.payload = payload
        self.kind = WSMsgType.BINARY if binary else WSMsgType.TEXT
        self.until = until
        self.stats = stats
        self.sent_at = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.send(self.kind, self.payload)

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        now = time.perf_counter()
        if frame.get_payload_as_bytes() != self.payload:
            self.stats["mismatches"] += 1
        self.stats["messages"] += 1
        self.stats["latencies"].append(now - self.sent_at)
        if now < self.until:
            self._send()
        elif not self.done.done():
            transport.send_close()
            transport.disconnect()
            self.done.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.done.set_result(None)


class RawPingPong(asyncio.Protocol):
    def __init__(self, payload: bytes, until: float, stats: dict):
        self.payload = payload
        self.until = until
        self.stats = stats
        self.buffer = b""
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.sent_at = time.perf_counter()
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < len(self.payload):
            return
        now = time.perf_counter()
        if self.buffer != self.payload:
            self.stats["mismatches"] += 1
        self.buffer = b""
        self.stats["messages"] += 1
        self.stats["latencies"].append(now - self.sent_at)
        if now < self.until:
            self.sent_at = now
            self.transport.write(self.payload)
        else:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def worker(url: str, connections: int, size: int, binary: bool, seconds: float):
    stats = {"messages": 0, "mismatches": 0, "latencies": []}
    payload = (os.urandom(size) if binary else b"x" * size)
    until = time.perf_counter() + seconds
    listeners = []
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        for _ in range(connections):
            _, protocol = await loop.create_connection(
                lambda: RawPingPong(payload, until, stats), parts.hostname, parts.port
            )
            listeners.append(protocol)
    else:
        for _ in range(connections):
            _, listener = await ws_connect(
                lambda: PingPong(payload, binary, until, stats), url
            )
            listeners.append(listener)
    await asyncio.wait_for(
        asyncio.gather(*(listener.done for listener in listeners)), seconds + 30
    )
    return stats


def run_worker(args) -> dict:
    return asyncio.run(worker(*args))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--binary", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    per = [args.connections // args.processes] * args.processes
    per[0] += args.connections - sum(per)
    jobs = [(args.url, n, args.size, args.binary, args.seconds) for n in per if n]
    began = time.perf_counter()
    with multiprocessing.Pool(len(jobs)) as pool:
        results = pool.map(run_worker, jobs)
    elapsed = time.perf_counter() - began
    latencies = sorted(x for r in results for x in r["latencies"])
    messages = sum(r["messages"] for r in results)
    print(
        json.dumps(
            {
                "messages": messages,
                "mismatches": sum(r["mismatches"] for r in results),
                "rate": messages / args.seconds,
                "elapsed": elapsed,
                "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
                "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000
                if latencies
                else None,
            }
        )
    )


if __name__ == "__main__":
    main()
