"""
L{wsecho.daemon.workers.links} without processes: the merging of the workers' metrics
and the parent's connection slots, over in-memory pipes.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wsecho.daemon.workers.links import (
    Coordinator,
    WorkerSide,
    exposition,
    merge,
    snapshot,
)


def _registry(messages: int, open_now: int, started: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("wsecho_messages", "m", ["type"], registry=registry).labels("text").inc(
        messages
    )
    Gauge("wsecho_connections_open", "o", registry=registry).set(open_now)
    Gauge("process_start_time_seconds", "s", registry=registry).set(started)
    Gauge("wsecho_build_info", "b", ["version"], registry=registry).labels("1").set(1)
    return registry


def _value(families, sample, **labels) -> float:
    (value,) = [
        v
        for family in families
        for s, ls, v in family[3]
        if s == sample and ls == labels
    ]
    return value


class MergeTests(SynchronousTestCase):
    def test_sums_counters_and_gauges_keeps_the_rest(self) -> None:
        """
        Counters and gauges are summed over the processes, the start time
        is the earliest, build info stays 1.
        """
        merged = merge(
            [snapshot(_registry(120, 3, 100.0)), snapshot(_registry(80, 2, 50.0))]
        )
        self.assertEqual(_value(merged, "wsecho_messages_total", type="text"), 200)
        self.assertEqual(_value(merged, "wsecho_connections_open"), 5)
        self.assertEqual(_value(merged, "process_start_time_seconds"), 50.0)
        self.assertEqual(_value(merged, "wsecho_build_info", version="1"), 1)
        text = exposition(merged).decode()
        self.assertIn('wsecho_messages_total{type="text"} 200.0', text)


class _Worker:
    """
    A worker at the other end of a L{WorkerSide}: it answers snapshots with
    its registry, or not at all.
    """

    def __init__(self, coordinator, number, registry, answers=True) -> None:
        self.registry = registry
        self.answers = answers
        self.side = WorkerSide(coordinator, number, self.received)
        coordinator.joined(number, self.side)
        self.lines: list[dict] = []

    def received(self, data: bytes) -> None:
        import json

        for line in data.splitlines():
            message = json.loads(line)
            self.lines.append(message)
            if message["op"] == "snapshot" and self.answers:
                self.tell(
                    op="counts", id=message["id"], families=snapshot(self.registry)
                )

    def tell(self, **message) -> None:
        import json

        self.side.dataReceived(json.dumps(message).encode() + b"\n")


class CoordinatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.coordinator = Coordinator(3, 2, CollectorRegistry(), self.clock)

    def test_slots_are_exact_and_freed_with_their_worker(self) -> None:
        """
        Slots are handed out up to the limits, whichever worker asks, given
        back, and freed when a worker goes.
        """
        one = _Worker(self.coordinator, 1, CollectorRegistry())
        two = _Worker(self.coordinator, 2, CollectorRegistry())
        answers = []
        for worker, client in (
            (one, "a"),
            (two, "a"),
            (one, "a"),
            (two, "b"),
            (two, "c"),
        ):
            worker.tell(op="take", id=len(answers), client=client)
            answers.append(worker.lines[-1]["answer"])
        self.assertEqual(
            answers,
            [
                None,
                None,
                "too many connections from this address",
                None,
                "too many connections",
            ],
        )
        two.tell(op="give", client="b")
        two.tell(op="take", id=9, client="c")
        self.assertIsNone(two.lines[-1]["answer"])
        self.coordinator.left(2, two.side)
        self.assertEqual(
            (self.coordinator.total, dict(self.coordinator.per_address)), (1, {"a": 1})
        )

    def test_scrape_merges_every_worker_and_remembers_the_dead(self) -> None:
        """
        A scrape asks every worker; one that does not answer within the
        timeout counts at its last figures; a dead one's counters stay.
        """
        one = _Worker(self.coordinator, 1, _registry(120, 3, 1.0))
        two = _Worker(self.coordinator, 2, _registry(80, 2, 2.0))
        scraped = []
        self.coordinator.scrape().addCallback(scraped.append)
        self.assertEqual(_value(scraped[0], "wsecho_messages_total", type="text"), 200)
        two.answers = False
        self.coordinator.scrape().addCallback(scraped.append)
        self.assertEqual(len(scraped), 1)
        self.clock.advance(2)
        self.assertEqual(_value(scraped[1], "wsecho_messages_total", type="text"), 200)
        self.coordinator.left(2, two.side)
        del one
        self.coordinator.scrape().addCallback(scraped.append)
        self.assertEqual(_value(scraped[2], "wsecho_messages_total", type="text"), 200)
        # The dead worker's gauges went with it.
        self.assertEqual(_value(scraped[2], "wsecho_connections_open"), 3)
