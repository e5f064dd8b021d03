"""
Prometheus metrics at C{/metrics}, with C{prometheus-client}: what the
echo did, counted as it happens, and the process's own figures.

Each site has its own registry, so that several sites in one process (the
tests) count apart.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector
from twisted.web import server
from twisted.web.resource import Resource

SIZE_BUCKETS = tuple(float(4**n) for n in range(3, 13))  # 64 B to 16 MiB
LATENCY_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class Metrics:
    """
    The echo's metrics, in a registry of their own.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        ProcessCollector(registry=registry)
        self.connections_open = Gauge(
            "wsecho_connections_open",
            "WebSocket connections open now (opening handshake included).",
            registry=registry,
        )
        self.connections_closed = Counter(
            "wsecho_connections_closed",
            "WebSocket connections closed, by the close code the peer sent "
            "(none: dropped without a close frame).",
            ["code"],
            registry=registry,
        )
        self.refusals = Counter(
            "wsecho_handshake_refusals",
            "Upgrade requests answered with an HTTP error, by reason.",
            ["reason"],
            registry=registry,
        )
        messages = Counter(
            "wsecho_messages",
            "Messages echoed, by type.",
            ["type"],
            registry=registry,
        )
        payload = Counter(
            "wsecho_message_bytes",
            "Payload bytes echoed (after decompression), by type.",
            ["type"],
            registry=registry,
        )
        sizes = Histogram(
            "wsecho_message_size_bytes",
            "Sizes of the messages echoed (after decompression).",
            ["type"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        # Children resolved once: a label lookup per message is not free.
        self.messages = {kind: messages.labels(kind) for kind in ("text", "binary")}
        self.payload = {kind: payload.labels(kind) for kind in ("text", "binary")}
        self.sizes = {kind: sizes.labels(kind) for kind in ("text", "binary")}
        self.latency = Histogram(
            "wsecho_echo_latency_seconds",
            "From the first byte of a message read to its echo written.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.deflate = Counter(
            "wsecho_deflate_bytes",
            "Payload bytes of permessage-deflate connections, counted when "
            "they close, by direction and form; the compression ratio is "
            "form=plain over form=compressed.",
            ["direction", "form"],
            registry=registry,
        )

    def connection_closed(self, code: int | None, stats: Any, deflate: bool) -> None:
        self.connections_open.dec()
        self.connections_closed.labels(str(code) if code else "none").inc()
        if deflate:
            for direction, compressed, plain in (
                (
                    "received",
                    stats.incomingOctetsWebSocketLevel,
                    stats.incomingOctetsAppLevel,
                ),
                (
                    "sent",
                    stats.outgoingOctetsWebSocketLevel,
                    stats.outgoingOctetsAppLevel,
                ),
            ):
                self.deflate.labels(direction, "compressed").inc(compressed)
                self.deflate.labels(direction, "plain").inc(plain)


class MetricsResource(Resource):
    """
    C{/metrics}: the registry in Prometheus' text format.
    """

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._registry = metrics.registry

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return generate_latest(self._registry)

    render_HEAD = render_GET
