"""
What every echo connection of a process shares: the settings, the memory
budget (and the heap trims it asks for), the metrics and the registry of
connections. The factory holds it; the site and its channels are given it.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.interfaces import IReactorTime

from wsecho._compat import autobahn_closing
from wsecho.settings import EchoSettings
from wsecho.ws.budget import MemoryBudget
from wsecho.ws.heap import Trimmer
from wsecho.ws.metrics import Metrics
from wsecho.ws.registry import Registry
from wsecho.ws.scheduler import Scheduler


class EchoContext:
    """
    The process's shared state for its echo connections.
    """

    def __init__(
        self, settings: EchoSettings, clock: IReactorTime | None = None
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.settings = settings
        self.clock = clock
        self._trimmer = Trimmer(clock)
        # A large buffer let go of, or many connections' fixed costs: give
        # the heap's free pages back soon.
        self.budget = MemoryBudget(
            settings.memory_budget, on_release=self._trimmer.soon, now=clock.seconds
        )
        # The HTTP channels admitted on the budget, by their transport: the
        # echo protocol that takes a connection over adopts its costs.
        self.admitted: dict[Any, Any] = {}
        self.metrics = Metrics(self.budget)
        self.registry = Registry(
            self.metrics, settings.max_connections, settings.max_connections_per_ip
        )
        # Connections that used their share of the CPU wait their turn here.
        self.scheduler = Scheduler(clock, self.metrics.throttled.inc)

    def stop(self) -> None:
        """
        Stop the timers (the process stops listening).
        """
        self._trimmer.stop()
        self.scheduler.stop()

    def count_closed(self, protocol: Any, opened: bool) -> None:
        """
        C{protocol}'s WebSocket is closed (C{opened}: it had opened): its
        slot is free, and the metrics count the close, once.
        """
        if not self.registry.closed(protocol):
            return
        metrics = self.metrics
        if opened:
            metrics.connection_closed(
                autobahn_closing.close_code(protocol),
                autobahn_closing.deflate_totals(protocol)
                if protocol.websocket_extensions_in_use
                else None,
            )
        else:
            metrics.connections_open.dec()
            metrics.refusals.labels("bad_handshake").inc()
