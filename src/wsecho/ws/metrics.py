"""
Prometheus metrics at C{/metrics}, with C{prometheus-client}: what the
echo did, counted as it happens, and the process's own figures.

Each site has its own registry, so that several sites in one process (the
tests) count apart.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

from wsecho import build_info
from wsecho.ws.budget import MemoryBudget

# No *_created series: they double the series of every counter, and
# Prometheus does not use them (it sees resets from the counters' values).
disable_created_metrics()


# A bucket counts what is <= its bound. The size buckets are powers of two
# (64 B to 16 MiB), so a size is counted in the bin of its bit length (see
# EchoTally.message); the latency ones are bisected.
SIZE_BUCKETS = tuple(float(4**n) for n in range(3, 13))
SIZE_BINS = 64
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


class EchoTally:
    """
    What was echoed, counted in plain integers and turned into Prometheus
    families when scraped: messages and bytes by type, message sizes and
    echo latency as histograms.

    C{prometheus-client}'s own counters take a lock per call; four of them
    cost a small echo a tenth of its time, this a fiftieth.
    """

    KINDS = ("text", "binary")

    def __init__(self) -> None:
        # Indexed by isBinary: 0 text, 1 binary.
        self.bytes = [0, 0]
        # Messages by the bit length of their size less one: bin b holds the
        # sizes over 2**(b-1) and up to 2**b (bin 0 and 1: 0 to 2 bytes).
        # The messages echoed are their sum.
        self.bins = [[0] * SIZE_BINS for _ in self.KINDS]
        self.latencies = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def message(self, binary: bool, size: int) -> None:
        # A bit length costs 20 ns; bisecting the bounds 110 (an int
        # compared with floats).
        self.bins[binary][(size - 1).bit_length()] += 1
        self.bytes[binary] += size

    def sizes(self, binary: bool) -> list[int]:
        """
        The messages of each size bucket (the last: past the largest
        bound), from the bins.
        """
        bins = self.bins[binary]
        counts = []
        below = 0
        for bound in SIZE_BUCKETS:
            # Sizes up to 2**k are in bins 0 to k; 2**k is k + 1 bits long.
            top = int(bound).bit_length()
            counts.append(sum(bins[below:top]))
            below = top
        counts.append(sum(bins[below:]))
        return counts

    def latency(self, seconds: float, messages: int = 1) -> None:
        """
        C{messages} echoed, each C{seconds} after its first byte was read.
        """
        self.latencies[bisect_left(LATENCY_BUCKETS, seconds)] += messages
        self.latency_sum += seconds * messages

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "wsecho_messages", "Messages echoed, by type.", labels=["type"]
        )
        payload = CounterMetricFamily(
            "wsecho_message_bytes",
            "Payload bytes echoed (after decompression), by type.",
            labels=["type"],
        )
        sizes = HistogramMetricFamily(
            "wsecho_message_size_bytes",
            "Sizes of the messages echoed (after decompression).",
            labels=["type"],
        )
        for binary, kind in enumerate(self.KINDS):
            counts = self.sizes(bool(binary))
            messages.add_metric([kind], sum(counts))
            payload.add_metric([kind], self.bytes[binary])
            sizes.add_metric(
                [kind],
                _cumulative(SIZE_BUCKETS, counts),
                sum_value=self.bytes[binary],
            )
        latency = HistogramMetricFamily(
            "wsecho_echo_latency_seconds",
            "From the first byte of a message read to its echo written.",
            buckets=_cumulative(LATENCY_BUCKETS, self.latencies),
            sum_value=self.latency_sum,
        )
        yield from (messages, payload, sizes, latency)


def _cumulative(
    bounds: Sequence[float], counts: Sequence[int]
) -> list[tuple[str, float]]:
    # Prometheus buckets count everything up to their bound.
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        total += count
        buckets.append((floatToGoString(bound), total))
    return buckets


def code_label(code: int | None) -> str:
    """
    A close code as a label: each of RFC 6455's and IANA's (1000-2999) on
    its own, the codes applications choose (3000-4999) by thousand, so
    that a client cannot make a series per code.
    """
    if not code:
        return "none"
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return str(code)


class BudgetCollector:
    """
    The memory budget (see L{wsecho.ws.budget}): its limit, what is held of
    it, and the connections closed to stay within it.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget

    def collect(self) -> Iterator[Metric]:
        budget = self._budget
        yield GaugeMetricFamily(
            "wsecho_memory_budget_bytes",
            "The memory budget for what is held for clients (0: none).",
            value=budget.limit,
        )
        yield GaugeMetricFamily(
            "wsecho_memory_budget_used_bytes",
            "Bytes held for clients now: unfinished messages after inflation, "
            "frames waiting to be whole, unread echoes and HTTP answers.",
            value=budget.used,
        )
        yield CounterMetricFamily(
            "wsecho_memory_budget_evictions",
            "Connections closed (1013, or dropped if not reading) to stay "
            "within the memory budget.",
            value=budget.evictions,
        )


class Metrics:
    """
    The echo's metrics, in a registry of their own.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        ProcessCollector(registry=registry)
        info = build_info()
        Gauge(
            "wsecho_build_info",
            "Always 1: the versions of wsecho and of what it runs on.",
            list(info),
            registry=registry,
        ).labels(**info).set(1)
        registry.register(BudgetCollector(budget))
        self.connections_open = Gauge(
            "wsecho_connections_open",
            "WebSocket connections open now (opening handshake included).",
            registry=registry,
        )
        self.connections_closed = Counter(
            "wsecho_connections_closed",
            "WebSocket connections closed, by the close code the peer sent, "
            "or the one the server sent when it closed first (3xxx and 4xxx: "
            "by thousand; none: dropped without a close frame).",
            ["code"],
            registry=registry,
        )
        self.opened = Counter(
            "wsecho_connections_opened",
            "WebSocket connections opened, by the HTTP version that carried "
            "them (1.1: an upgrade; 2: an extended CONNECT, RFC 8441).",
            ["http"],
            registry=registry,
        )
        # Its children, made once: labels() at each handshake costs more
        # than the count.
        self.opened_over = {
            version: self.opened.labels(version) for version in ("1.1", "2")
        }
        self.refusals = Counter(
            "wsecho_handshake_refusals",
            "Upgrade requests answered with an HTTP error, by reason.",
            ["reason"],
            registry=registry,
        )
        self.echoes = EchoTally()
        registry.register(self.echoes)
        self.throttled = Counter(
            "wsecho_throttled_seconds",
            "Seconds connections spent waiting for their turn, having used "
            "their share of the CPU (see wsecho.ws.scheduler).",
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

    def connection_closed(
        self, code: int | None, deflated: tuple[int, int, int, int] | None
    ) -> None:
        """
        A connection closed with C{code} (L{None}: dropped without a close
        frame; 1005: the peer's close frame had no code); with permessage-deflate, its payload bytes compressed and
        plain, received then sent.
        """
        self.connections_open.dec()
        self.connections_closed.labels(code_label(code)).inc()
        if deflated is not None:
            received_compressed, received_plain, sent_compressed, sent_plain = deflated
            for direction, compressed, plain in (
                ("received", received_compressed, received_plain),
                ("sent", sent_compressed, sent_plain),
            ):
                self.deflate.labels(direction, "compressed").inc(compressed)
                self.deflate.labels(direction, "plain").inc(plain)
