"""
The echo's connections as a whole: the factory that counts them for the
connection limits, drains them on shutdown, holds the memory budget, and
trims the heap after large buffers are let go of.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wsecho.settings import MiB
from wsecho.ws import heap as memory
from wsecho.ws.budget import MemoryBudget
from wsecho.ws.metrics import Metrics

if TYPE_CHECKING:
    from wsecho.ws.protocol import EchoServerProtocol

# How long after a large buffer was freed the heap is trimmed.
TRIM_DELAY = 1.0


class EchoServerFactory(WebSocketServerFactory):
    """
    Autobahn's factory, with what the echo needs to know of its settings,
    and the open connections, counted per client address for the limits
    and kept for a graceful shutdown.
    """

    _log = Logger()

    subprotocols: tuple[str, ...] = ()
    max_message_size: int = 16 * MiB
    max_frame_size: int = 16 * MiB
    slow_client_timeout: float = 0.0
    max_connections = 0
    max_connections_per_ip = 0
    # With --workers: the parent, which holds the daemon's connection slots
    # and merges the workers' metrics (a wsecho.daemon.workers.links.ParentLink).
    link: Any = None
    # Ready: /readyz answers 200. Draining: new upgrades are refused (503).
    ready = True
    draining = False
    accept_deflate: Any = None
    # Whether messages are counted in the metrics (not with --no-metrics).
    counted = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every connection, until its TCP connection is lost; and those
        # whose WebSocket is not closed yet, which the limits count.
        self.connections: set[EchoServerProtocol] = set()
        self.slots: set[EchoServerProtocol] = set()
        self.per_address: Counter[str] = Counter()
        self._drained: list[Deferred[None]] = []
        self.budget = MemoryBudget(0, on_release=self._released)
        self._trim: IDelayedCall | None = None
        self.metrics = Metrics(self.budget)

    def buildProtocol(self, addr: Any) -> EchoServerProtocol:
        protocol = cast("EchoServerProtocol", super().buildProtocol(addr))
        # wsecho.http.site.EchoResource replaces it with the address it decided
        # the client has (a trusted proxy's forwarded one).
        protocol.client_address = getattr(addr, "host", None) or str(addr)
        return protocol

    def _released(self) -> None:
        # A large buffer was let go of: give the heap's free pages back to
        # the system soon, at most once a second (a trim walks the heap).
        if self._trim is None:
            self._trim = self.reactor.callLater(TRIM_DELAY, self._trimmed)

    def _trimmed(self) -> None:
        self._trim = None
        memory.trim()

    def stop_timers(self) -> None:
        if self._trim is not None and self._trim.active():
            self._trim.cancel()
        self._trim = None

    def would_exceed(self, address: str) -> str | None:
        """
        Why a new connection from C{address} would pass this process's
        connection limits, or L{None} if it may go ahead.
        """
        if self.max_connections and len(self.slots) >= self.max_connections:
            return "too many connections"
        per_ip = self.max_connections_per_ip
        if per_ip and self.per_address[address] >= per_ip:
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
        self.slots.add(protocol)
        self.per_address[protocol.client_address] += 1
        self.metrics.connections_open.inc()

    def closed(self, protocol: EchoServerProtocol) -> None:
        """
        C{protocol}'s WebSocket is closed (its TCP connection may not be
        yet): it no longer counts against the limits, and is counted as
        closed.
        """
        if protocol not in self.slots:
            return
        self.slots.remove(protocol)
        if protocol.opened:
            self.metrics.connection_closed(
                protocol.close_code(),
                protocol.trafficStats,
                bool(protocol.websocket_extensions_in_use),
            )
        else:
            self.metrics.connections_open.dec()
            self.metrics.refusals.labels("bad_handshake").inc()
        self.per_address[protocol.client_address] -= 1
        if not self.per_address[protocol.client_address]:
            del self.per_address[protocol.client_address]
        if self.link is not None:
            self.link.give(protocol.client_address)

    def forget(self, protocol: EchoServerProtocol) -> None:
        """
        C{protocol}'s connection is gone.
        """
        self.closed(protocol)
        self.connections.discard(protocol)
        if self.draining and not self.connections:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

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
        for protocol in list(self.connections):
            try:
                protocol.going_away(code)
            except Exception:
                self._log.failure("closing {peer}", peer=protocol.peer)
                protocol.dropConnection(abort=True)
        if not self.connections:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._drained.append(done)
        self._log.info(
            "waiting up to {timeout} s for {count} connections to close",
            timeout=timeout,
            count=len(self.connections),
        )

        def drop_the_rest() -> None:
            for protocol in list(self.connections):
                protocol.dropConnection(abort=True)

        timer = clock.callLater(timeout, drop_the_rest)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()

        return done.addCallback(stop_timer)
