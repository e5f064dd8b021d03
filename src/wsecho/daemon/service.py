"""
The daemon's service: its listeners, started or exited from with one line,
reloaded on SIGHUP, stopped gracefully on SIGTERM.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from wsecho import _compat
from wsecho.daemon.logs import limit_repeats
from wsecho.daemon.process import (
    announce,
    bound,
    exit_if_cannot_listen,
    raise_file_limit,
    take_signals,
    with_backlog,
)
from wsecho.daemon.tls import ReloadableTLS, is_tls
from wsecho.http.site import Site
from wsecho.ws import heap as memory

_log = Logger()


def warn_if_libraries_changed() -> None:
    """
    Say once, at start-up, which shortcuts are off because Twisted or
    Autobahn no longer has the private names they need (L{wsecho._compat}).
    """
    changed = _compat.changed()
    if changed:
        _log.warn(
            "this Twisted or Autobahn changed internals wsecho knows; taking "
            "the public (slower) path for: {shortcuts}",
            shortcuts=", ".join(changed),
        )


@implementer(IStreamServerEndpoint)
class _Recorded:
    """
    An endpoint that keeps the port it listens on, for the start-up line:
    C{StreamServerEndpointService} keeps it only in private attributes.
    """

    def __init__(self, endpoint: Any, tls: bool, ports: list[str]) -> None:
        self._endpoint = endpoint
        self._tls = tls
        self._ports = ports

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        def record(port: IListeningPort) -> IListeningPort:
            self._ports.append(bound(port, self._tls))
            return port

        listening: Deferred[IListeningPort] = self._endpoint.listen(factory)
        return listening.addCallback(record)


class EchoService(MultiService):
    """
    The listeners, started or exited from with one line; stopped gracefully.

    C{strports.service} raises synchronously when it cannot listen (in
    C{privilegedStartService}, before twistd sheds root); twistd would print
    that as a traceback.

    On stop (SIGTERM, SIGINT): stop listening, send every client close 1001
    (going away), wait up to the shutdown timeout for the closing
    handshakes, then drop the rest. twistd then exits 0: wsecho takes the
    two signals over from the reactor, whose handlers make twistd exit by
    the signal instead.
    """

    _log = Logger()

    # The start-up line (see announce), logged when the service starts.
    startup: dict[str, Any] | None = None
    # Under twistd: limit repeated log events (wsecho.daemon.logs) in front
    # of the observers twistd logs to, once it has begun to.
    limit_log_repeats = False

    def __init__(
        self,
        site: Site,
        shutdown_timeout: float,
        reactor: Any,
        drain_delay: float = 0.0,
        close_code: int = 1001,
    ) -> None:
        super().__init__()
        self._site = site
        self._shutdown_timeout = shutdown_timeout
        self._drain_delay = drain_delay
        self._close_code = close_code
        self._reactor = reactor
        self._stopping = False
        self._listened = False
        self.tls: list[ReloadableTLS] = []
        # Where it listens, as bound, in the order of the descriptions.
        self.listening: list[str] = []

    @classmethod
    def from_options(cls, site: Site, options: Any, reactor: Any) -> EchoService:
        """
        The service with the shutdown options of C{options} (the plugin's).
        """
        return cls(
            site,
            options["shutdown-timeout"],
            reactor,
            drain_delay=options["drain-delay"],
            close_code=options["shutdown-close-code"],
        )

    def listen(self, description: str) -> None:
        """
        Add a listener for a server endpoint description; C{ssl:} ones
        reload their key and certificate on SIGHUP.
        """
        service = strports.service(
            with_backlog(description), self._site, reactor=self._reactor
        )
        assert isinstance(service, StreamServerEndpointService)
        tls = is_tls(description)
        if tls:
            protocols = (
                (b"h2", b"http/1.1") if self._site.h2_connect else (b"http/1.1",)
            )
            self.tls.append(
                ReloadableTLS(description, self._reactor, service.endpoint, protocols)
            )
        service.endpoint = _Recorded(service.endpoint, tls, self.listening)
        service.setServiceParent(self)

    def privilegedStartService(self) -> None:
        """
        Listen, once: C{makeService} already does under twistd, which calls
        this again.
        """
        if self._listened:
            return
        self._listened = True
        raise_file_limit()
        memory.map_large_buffers()
        exit_if_cannot_listen(super().privilegedStartService)

    def startService(self) -> None:
        if self.limit_log_repeats:
            limit_repeats(self._reactor)
        exit_if_cannot_listen(super().startService)
        announce(self.startup, self.listening)
        warn_if_libraries_changed()
        _compat.twisted.poll_without_log_context(self._reactor)
        self._reactor.callWhenRunning(
            take_signals, self._reactor, self._on_stop, self.reload_tls
        )

    def cut_short(self, timeout: float) -> None:
        """
        Stop without the drain delay, and give clients at most C{timeout}
        seconds for their closing handshakes: a worker whose parent is gone
        (L{wsecho.daemon.workers.child}) must free the port at once.
        """
        self._drain_delay = 0.0
        self._shutdown_timeout = min(self._shutdown_timeout or timeout, timeout)

    def reload_tls(self) -> None:
        if not self.tls:
            self._log.info("SIGHUP: no TLS files to reload")
        for tls in self.tls:
            tls.reload()

    def _on_stop(self, number: signal.Signals) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._log.info("{signal}: shutting down", signal=number.name)
        self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """
        Stop in two steps: for C{--drain-delay} seconds, /readyz answers 503
        while clients are still accepted and echoed (a load balancer's checks
        see it, and it sends no more); then stop listening, and close every
        client with C{--shutdown-close-code}, waiting up to
        C{--shutdown-timeout}.
        """
        registry = self._site.context.registry
        registry.ready = False  # /readyz answers 503 from now on
        waited: Deferred[None] = defer.succeed(None)
        if self._drain_delay:
            self._log.info(
                "draining: /readyz answers 503, still serving for {delay} s",
                delay=self._drain_delay,
            )
            waited = task.deferLater(self._reactor, self._drain_delay, lambda: None)

        def stop(_: object) -> Deferred[Any]:
            registry.draining = True  # new upgrades get 503
            self._site.going_away()  # HTTP/2: GOAWAY once streams are done
            return defer.maybeDeferred(super(EchoService, self).stopService)

        def drain(_: object) -> Deferred[None]:
            return registry.drain(
                self._shutdown_timeout, self._reactor, self._close_code
            )

        def h2_closed(_: object) -> Deferred[None]:
            # Their last streams' ends and GOAWAYs sent, not cut off by the
            # reactor's stop.
            return self._site.h2_closed(self._shutdown_timeout, self._reactor)

        return waited.addCallback(stop).addCallback(drain).addCallback(h2_closed)
