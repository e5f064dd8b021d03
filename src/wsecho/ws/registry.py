"""
The echo's connections as a whole: counted per client address for the
connection limits (by this process, or with --workers by the parent for the
whole daemon), and closed together on shutdown.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wsecho.ws.metrics import Metrics

if TYPE_CHECKING:
    from wsecho.ws.protocol import EchoServerProtocol


class Registry:
    """
    The open connections, counted per client address for the limits and
    kept for a graceful shutdown.
    """

    _log = Logger()

    def __init__(
        self, metrics: Metrics, max_connections: int = 0, max_per_address: int = 0
    ) -> None:
        self._metrics = metrics
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        # Every connection, until its TCP connection is lost; and those
        # whose WebSocket is not closed yet, which the limits count.
        self.connections: set[EchoServerProtocol] = set()
        self._slots: set[EchoServerProtocol] = set()
        self._per_address: Counter[str] = Counter()
        self._drained: list[Deferred[None]] = []
        self._clock: IReactorTime | None = None
        # With --workers: the parent, which holds the daemon's connection
        # slots (a wsecho.daemon.workers.links.ParentLink).
        self.link: Any = None
        # Ready: /readyz answers 200. Draining: new upgrades are refused.
        self.ready = True
        self.draining = False

    def would_exceed(self, address: str) -> str | None:
        """
        Why a new connection from C{address} would pass this process's
        connection limits, or L{None} if it may go ahead.
        """
        if self.max_connections and len(self._slots) >= self.max_connections:
            return "too many connections"
        per_ip = self.max_per_address
        if per_ip and self._per_address[address] >= per_ip:
            return "too many connections from this address"
        return None

    def take_slot(self, address: str) -> Deferred[str | None]:
        """
        A connection slot for C{address}: fires with L{None}, or with why
        not. With --workers the parent decides, for the whole daemon (and
        the slot is its until L{closed} or L{untake}); alone, this process
        does, at once (the slot is counted when the protocol connects).
        """
        if self.link is not None:
            return cast("Deferred[str | None]", self.link.take(address))
        return succeed(self.would_exceed(address))

    def untake(self, address: str) -> None:
        """
        A slot taken for C{address} goes unused (the client left first).
        """
        if self.link is not None:
            self.link.give(address)

    def connected(self, protocol: EchoServerProtocol) -> None:
        self.connections.add(protocol)
        self._slots.add(protocol)
        self._per_address[protocol.client_address] += 1
        self._metrics.connections_open.inc()

    def closed(self, protocol: EchoServerProtocol) -> bool:
        """
        C{protocol}'s WebSocket is closed (its TCP connection may not be
        yet): it no longer counts against the limits. L{False} if it did
        not (already closed).
        """
        if protocol not in self._slots:
            return False
        self._slots.remove(protocol)
        address = protocol.client_address
        self._per_address[address] -= 1
        if not self._per_address[address]:
            del self._per_address[address]
        if self.link is not None:
            self.link.give(address)
        return True

    def forget(self, protocol: EchoServerProtocol) -> None:
        """
        C{protocol}'s connection is gone.
        """
        self.connections.discard(protocol)
        clock = self._clock
        if self.draining and not self.connections and clock is not None:
            # Fired a reactor turn later, not from here: this runs within
            # the last connection's own read (over HTTP/2 and TLS, inside
            # TLS's read loop), and what the drain resumes (the reactor's
            # shutdown: every transport lost at once) would pull that
            # connection's TLS state from under the read.
            waiting, self._drained = self._drained, []
            if waiting:
                clock.callLater(0, _fire, waiting)

    def drain(
        self, timeout: float, clock: IReactorTime, code: int = 1001
    ) -> Deferred[None]:
        """
        Close every connection with C{code} (1001, going away, or 1012,
        service restart); fire once all are closed, dropping those still
        open after C{timeout} seconds.
        """
        self.draining = True
        self.ready = False
        self._clock = clock
        for protocol in list(self.connections):
            try:
                protocol.going_away(code)
            except Exception:
                self._log.failure("closing {peer}", peer=protocol.peer)
                protocol.abort()
        if not self.connections:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._drained.append(done)
        count = len(self.connections)
        self._log.info(
            "waiting up to {timeout} s for {count} {connections} to close",
            timeout=timeout,
            count=count,
            connections="connection" if count == 1 else "connections",
        )

        def drop_the_rest() -> None:
            for protocol in list(self.connections):
                protocol.abort()

        timer = clock.callLater(timeout, drop_the_rest)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()

        return done.addCallback(stop_timer)


def _fire(waiting: list[Deferred[None]]) -> None:
    for d in waiting:
        d.callback(None)
