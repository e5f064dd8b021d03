"""
One daemon, several workers: with C{--workers N}, every scrape of
C{/metrics} answers for the whole daemon and the connection limits count
every worker's connections.

The parent (L{wsecho.daemon.workers.pool.WorkerPool}) talks with each worker over a
pipe each way (the worker's stdin, and a descriptor of its own), in JSON
lines:

- connection slots: a worker asks for one before it upgrades a client
  (C{take}), and gives it back when the WebSocket closes (C{give}). The
  parent holds the counts, so that the limits are exact however the kernel
  spreads concurrent connects; a dead worker's slots are freed.
- metrics: the worker that took a scrape asks the parent (C{scrape}); the
  parent asks every worker for its families (C{snapshot}), merges them with
  its own process figures, and answers. Counters and histograms are summed
  (a worker that died is remembered at its last figures, so that no counter
  goes back), gauges summed, start time and descriptor limit the lowest,
  build info as it is.

prometheus-client's multiprocess mode would share counters through files,
but it takes none of the custom collectors the echo counts with (plain
integers: a lock per message costs a small echo a tenth of its time).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

# How long a scrape waits for a worker that does not answer (it is then
# counted at its last figures).
SNAPSHOT_TIMEOUT = 2.0

Snapshot = list[list[Any]]  # [name, documentation, type, [[sample, labels, value]]]

# Gauges that are not summed across processes.
_LOWEST = ("process_start_time_seconds", "process_max_fds")
_AS_IS = ("wsecho_build_info",)


def snapshot(registry: CollectorRegistry) -> Snapshot:
    """
    A registry's families, as plain data for a JSON line.
    """
    return [
        [
            family.name,
            family.documentation,
            family.type,
            [[s.name, s.labels, s.value] for s in family.samples],
        ]
        for family in registry.collect()
    ]


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """
    The families of several processes as those of one.
    """
    families: dict[str, list[Any]] = {}
    values: dict[str, dict[tuple[str, str], list[Any]]] = {}
    for one in snapshots:
        for name, documentation, kind, samples in one:
            if name not in families:
                families[name] = [name, documentation, kind, []]
                values[name] = {}
            merged = values[name]
            for sample, labels, value in samples:
                key = (sample, json.dumps(labels, sort_keys=True))
                if key not in merged:
                    merged[key] = [sample, labels, value]
                elif sample in _LOWEST:
                    merged[key][2] = min(merged[key][2], value)
                elif sample not in _AS_IS:
                    merged[key][2] += value
    for name, family in families.items():
        family[3] = list(values[name].values())
    return list(families.values())


def banked(last: Snapshot) -> Snapshot:
    """
    What a dead worker still counts for: its counters and histograms (its
    gauges went with it).
    """
    return [f for f in last if f[2] in ("counter", "histogram")]


class _Merged:
    def __init__(self, families: Snapshot) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for name, documentation, kind, samples in self._families:
            family = Metric(name, documentation, kind)
            for sample, labels, value in samples:
                family.add_sample(sample, labels, value)
            yield family


def exposition(families: Snapshot) -> bytes:
    """
    Merged families in Prometheus' text format.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(families))
    return generate_latest(registry)


class _Lines(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024 * 1024

    def send(self, **message: Any) -> None:
        self.sendLine(json.dumps(message).encode())

    def lineReceived(self, line: bytes) -> None:
        self.received(json.loads(line))

    def received(self, message: dict[str, Any]) -> None:
        raise NotImplementedError


class ParentLink(_Lines):
    """
    A worker's side: it asks for slots and scrapes, and answers snapshots.
    """

    def __init__(
        self,
        registry: Callable[[], CollectorRegistry | None],
        parent_gone: Callable[[], None] = lambda: None,
    ) -> None:
        self._registry = registry
        self._asked: dict[int, Deferred[Any]] = {}
        self._next = 0
        # Called at the pipe's end: the parent has died (or is exiting).
        self._parent_gone = parent_gone

    def _ask(self, **message: Any) -> Deferred[Any]:
        self._next += 1
        asked: Deferred[Any] = Deferred()
        self._asked[self._next] = asked
        self.send(id=self._next, **message)
        return asked

    def take(self, client: str) -> Deferred[str | None]:
        """
        A connection slot for C{client}; fires with L{None}, or with why not
        (C{"too many connections"}).
        """
        return self._ask(op="take", client=client)

    def give(self, client: str) -> None:
        self.send(op="give", client=client)

    def scrape(self) -> Deferred[bytes]:
        """
        The whole daemon's metrics, in Prometheus' text format.
        """
        return self._ask(op="scrape").addCallback(exposition)

    def received(self, message: dict[str, Any]) -> None:
        if message["op"] == "snapshot":
            registry = self._registry()
            families = snapshot(registry) if registry is not None else []
            self.send(op="counts", id=message["id"], families=families)
            return
        asked = self._asked.pop(message["id"], None)
        if asked is not None:
            asked.callback(message.get("answer"))

    def connectionLost(self, reason: Any = None) -> None:
        asked, self._asked = self._asked, {}
        for waiting in asked.values():
            waiting.errback(ConnectionError("the parent is gone"))
        self._parent_gone()


class Coordinator:
    """
    The parent's side: the daemon's connection counts, and the merging of
    its workers' metrics.
    """

    def __init__(
        self,
        max_connections: int,
        max_per_address: int,
        own: CollectorRegistry,
        clock: Any,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self._own = own
        self._clock = clock
        self.workers: dict[int, WorkerSide] = {}
        self.total = 0
        self.per_address: Counter[str] = Counter()
        self._bank: list[Snapshot] = []
        self._next = 0
        self._waiting: dict[
            int, tuple[Deferred[None], dict[int, Snapshot], dict[int, WorkerSide]]
        ] = {}

    def joined(self, number: int, side: WorkerSide) -> None:
        self.workers[number] = side

    def left(self, number: int, side: WorkerSide) -> None:
        """
        A worker is gone: its slots are free, its counts banked.
        """
        if self.workers.get(number) is side:
            del self.workers[number]
        for client, count in list(side.held.items()):
            self._release(side, client, count)
        if side.last:
            self._bank.append(banked(side.last))

    def take(self, side: WorkerSide, client: str) -> str | None:
        if self.max_connections and self.total >= self.max_connections:
            return "too many connections"
        if self.max_per_address and self.per_address[client] >= self.max_per_address:
            return "too many connections from this address"
        self.total += 1
        self.per_address[client] += 1
        side.held[client] += 1
        return None

    def give(self, side: WorkerSide, client: str) -> None:
        if side.held[client] > 0:
            self._release(side, client, 1)

    def _release(self, side: WorkerSide, client: str, count: int) -> None:
        for counts in (side.held, self.per_address):
            counts[client] -= count
            if counts[client] <= 0:
                del counts[client]
        self.total -= count

    def scrape(self) -> Deferred[Snapshot]:
        """
        Every worker's families, merged with the parent's own and with those
        banked from dead workers.
        """
        self._next += 1
        number = self._next
        done: Deferred[None] = Deferred()
        got: dict[int, Snapshot] = {}
        expected = dict(self.workers)
        self._waiting[number] = (done, got, expected)

        def finish() -> None:
            # A worker that did not answer in time counts at its last figures.
            if self._waiting.pop(number, None) is not None:
                done.callback(None)

        timer = self._clock.callLater(SNAPSHOT_TIMEOUT, finish)
        for side in expected.values():
            side.send(op="snapshot", id=number)
        if not expected:
            finish()

        def merged(_: object) -> Snapshot:
            if timer.active():
                timer.cancel()
            latest = [got.get(n) or side.last for n, side in expected.items()]
            return merge([snapshot(self._own), *self._bank, *latest])

        return done.addCallback(merged)

    def counted(self, side: WorkerSide, number: int, families: Snapshot) -> None:
        side.last = families
        waiting = self._waiting.get(number)
        if waiting is None:
            return
        done, got, expected = waiting
        got[side.number] = families
        if all(n in got or n not in self.workers for n in expected):
            del self._waiting[number]
            done.callback(None)


class _Pipe:
    """
    The transport of a L{WorkerSide}: the parent writes to a worker's stdin
    through its process transport, and reads what the worker writes on its
    control descriptor from C{childDataReceived}.
    """

    disconnecting = False

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.disconnecting = True


class WorkerSide(_Lines):
    """
    The parent's end of one worker's pipes.
    """

    _log = Logger()

    def __init__(
        self, coordinator: Coordinator, number: int, write: Callable[[bytes], None]
    ) -> None:
        self.coordinator = coordinator
        self.number = number
        self.held: Counter[str] = Counter()
        self.last: Snapshot = []
        self.makeConnection(_Pipe(write))

    def received(self, message: dict[str, Any]) -> None:
        op = message["op"]
        coordinator = self.coordinator
        if op == "take":
            refusal = coordinator.take(self, message["client"])
            self.send(op="answer", id=message["id"], answer=refusal)
        elif op == "give":
            coordinator.give(self, message["client"])
        elif op == "counts":
            coordinator.counted(self, message["id"], message["families"])
        elif op == "scrape":
            asking = message["id"]

            def reply(families: Snapshot) -> None:
                self.send(op="answer", id=asking, answer=families)

            coordinator.scrape().addCallback(reply).addErrback(
                lambda f: self._log.failure("merging the workers' metrics", f)
            )
