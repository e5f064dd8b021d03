"""
C{--workers N}: N worker processes accepting from the same listening
sockets, under a parent that keeps N of them running.

The parent opens the listeners (so a port in use fails start-up as it does
with one process, and privileged ports can be opened before twistd sheds
root), does not accept on them itself, and passes their descriptors to
each worker, which adopts them (Twisted's C{adoptStreamPort}) with the echo
site, wrapped in TLS for C{ssl:} listeners. The kernel hands each new
connection to one of the workers.

Workers log through the parent: each writes its events as JSON lines on a
pipe, and the parent publishes them in its own log (text, JSON, a file:
whatever twistd was told), marked with the worker's number.

The parent passes SIGTERM and SIGINT on (each worker closes its clients
with 1001 and exits), SIGHUP too (each reloads its TLS files), and starts a
worker again when one dies, waiting longer after each quick death.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector
from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.stdio import StandardIO
from twisted.logger import (
    Logger,
    LogLevel,
    eventFromJSON,
    globalLogPublisher,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from wsecho.daemon.logs import limit_repeats
from wsecho.daemon.process import (
    announce,
    bound,
    exit_if_cannot_listen,
    raise_file_limit,
    take_signals,
    with_backlog,
)
from wsecho.daemon.service import EchoService
from wsecho.daemon.tls import ReloadableTLS, alpn, is_tls
from wsecho.daemon.workers.links import Coordinator, ParentLink, WorkerSide
from wsecho.http.site import make_site

# The environment variable that tells a worker which descriptors are its
# listeners, in the order of the --listen descriptions.
FDS_VARIABLE = "WSECHO_WORKER_FDS"
# Which worker it is (1 to N), for the logs.
NUMBER_VARIABLE = "WSECHO_WORKER_NUMBER"
# The descriptor on which a worker writes to the parent (it reads its stdin).
CONTROL_VARIABLE = "WSECHO_WORKER_CONTROL"
# The parent's pid: a worker that finds another parent has lost its own.
PARENT_VARIABLE = "WSECHO_WORKER_PARENT"

# A worker that dies sooner than this after it started is started again
# after a delay that doubles each time, up to MAX_RESTART_DELAY.
QUICK_DEATH = 10.0
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
# Past the shutdown timeout, how long a worker has to exit before it is
# killed.
EXIT_GRACE = 5.0


class WorkerPool(MultiService):
    """
    The parent of C{--workers N}.
    """

    _log = Logger()

    def __init__(
        self,
        count: int,
        descriptions: Sequence[str],
        arguments: Sequence[str],
        shutdown_timeout: float,
        reactor: Any,
        max_connections: int = 0,
        max_connections_per_ip: int = 0,
    ) -> None:
        super().__init__()
        self.count = count
        self.descriptions = list(descriptions)
        self.arguments = list(arguments)
        self.shutdown_timeout = shutdown_timeout
        self.reactor = reactor
        # The daemon's connection slots and metrics, for all the workers;
        # the parent's own process figures count in them.
        own = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=own)
        self.coordinator = Coordinator(
            max_connections, max_connections_per_ip, own, reactor
        )
        self.ports: list[IListeningPort] = []
        self.workers: dict[int, WorkerProcess] = {}  # by number
        self.stopping = False

    def privilegedStartService(self) -> None:
        # Once: makeService already listens under twistd (wsecho.daemon.tap).
        if self.ports:
            return
        raise_file_limit()
        exit_if_cannot_listen(self._listen)
        super().privilegedStartService()

    def _listen(self) -> None:
        # TCP, TLS, UNIX and systemd endpoints all listen at once: the
        # Deferred has fired when listen() returns.
        for description in self.descriptions:
            endpoint = endpoints.serverFromString(
                self.reactor, with_backlog(description)
            )
            listening = endpoint.listen(_ForTheWorkers())
            port: list[IListeningPort] = []
            listening.addCallback(port.append)
            if not port:
                failure: list[Failure] = []
                listening.addErrback(failure.append)
                failure[0].raiseException()
            # The workers accept; the parent only holds the socket open.
            cast(Any, port[0]).stopReading()
            self.ports.append(port[0])

    startup: dict[str, Any] | None = None
    # As EchoService's: under twistd, repeated log events are limited, the
    # workers' too (each limits its own, and the parent all it publishes).
    limit_log_repeats = False

    def startService(self) -> None:
        if self.limit_log_repeats:
            limit_repeats(self.reactor)
        super().startService()
        announce(
            self.startup,
            [
                bound(port, is_tls(description))
                for description, port in zip(self.descriptions, self.ports, strict=True)
            ],
        )
        for number in range(1, self.count + 1):
            self._start(number)
        self.reactor.callWhenRunning(
            take_signals,
            self.reactor,
            self._on_stop,
            lambda: self.signal_workers(signal.SIGHUP),
        )

    def _on_stop(self, number: signal.Signals) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._log.info(
            "{signal}: shutting down {count} workers",
            signal=number.name,
            count=len(self.workers),
        )
        self.reactor.stop()

    def signal_workers(self, number: int) -> None:
        for worker in self.workers.values():
            worker.signal(number)

    def _start(self, number: int, delay: float = FIRST_RESTART_DELAY) -> None:
        # Its stdin and a descriptor after the listeners: the pipes of its
        # link to the parent (wsecho.daemon.workers.links); stdout: its log.
        fds: dict[int, Any] = {0: "w", 1: "r", 2: 2}
        inherited = []
        for child_fd, port in enumerate(self.ports, start=3):
            fds[child_fd] = cast(Any, port).fileno()
            inherited.append(str(child_fd))
        control = 3 + len(self.ports)
        fds[control] = "r"
        env = dict(os.environ)
        env[FDS_VARIABLE] = ",".join(inherited)
        env[NUMBER_VARIABLE] = str(number)
        env[CONTROL_VARIABLE] = str(control)
        env[PARENT_VARIABLE] = str(os.getpid())
        worker = WorkerProcess(self, number, delay, control)
        self.workers[number] = worker
        argv = [sys.executable, "-m", "wsecho.daemon.workers.child", *self.arguments]
        # The worker inherits a blocked SIGHUP, and unblocks it once its
        # handler is in place (take_signals): a reload sent while it starts
        # would otherwise kill it (the default action).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            self.reactor.spawnProcess(
                worker, sys.executable, argv, env=env, childFDs=fds
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self._log.info(
            "worker {number} started: pid {pid}",
            number=number,
            pid=worker.transport.pid if worker.transport else None,
        )

    def ended(self, worker: WorkerProcess, reason: Failure) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        code = getattr(reason.value, "exitCode", None)
        signalled = getattr(reason.value, "signal", None)
        how = f"signal {signalled}" if signalled else f"exit code {code}"
        if self.stopping or not self.running:
            self._log.info(
                "worker {number} ended ({how})", number=worker.number, how=how
            )
            return
        lived = self.reactor.seconds() - worker.started
        delay = (
            min(worker.delay * 2, MAX_RESTART_DELAY)
            if lived < QUICK_DEATH
            else FIRST_RESTART_DELAY
        )
        wait = worker.delay if lived < QUICK_DEATH else 0.0
        self._log.error(
            "worker {number} died ({how}) after {lived:.1f} s; starting it "
            "again in {wait:.1f} s",
            number=worker.number,
            how=how,
            lived=lived,
            wait=wait,
        )
        self.reactor.callLater(wait, self._restart, worker.number, delay)

    def _restart(self, number: int, delay: float) -> None:
        if self.running and not self.stopping and number not in self.workers:
            self._start(number, delay)

    def stopService(self) -> Deferred[None]:
        """
        Stop every worker with SIGTERM (each drains its clients); kill
        those still running past the shutdown timeout and a grace.
        """
        self.stopping = True
        super().stopService()
        waiting = [worker.ended_d for worker in self.workers.values()]
        self.signal_workers(signal.SIGTERM)

        def kill() -> None:
            for worker in self.workers.values():
                self._log.warn(
                    "worker {number} did not exit: killed", number=worker.number
                )
                worker.signal(signal.SIGKILL)

        timer = self.reactor.callLater(self.shutdown_timeout + EXIT_GRACE, kill)
        done = defer.gatherResults(waiting, consumeErrors=True)

        def cancel(_: object) -> Deferred[Any]:
            if timer.active():
                timer.cancel()
            # Only now: closing a listening socket shuts it down for every
            # process that shares it, and workers still draining (with
            # --drain-delay) accept until they stop listening themselves.
            return defer.gatherResults(
                [defer.maybeDeferred(port.stopListening) for port in self.ports],
                consumeErrors=True,
            )

        return done.addBoth(cancel).addCallback(lambda _: None)


class _ForTheWorkers(Factory):
    """
    What the parent listens with: it never accepts.
    """

    noisy = False
    protocol = Protocol

    def logPrefix(self) -> str:
        return "wsecho (for the workers)"


class WorkerProcess(ProcessProtocol):
    """
    One worker, seen from the parent: its log events come in on its stdout.
    """

    def __init__(
        self, pool: WorkerPool, number: int, delay: float, control: int
    ) -> None:
        self.pool = pool
        self.number = number
        self.delay = delay
        self.started = pool.reactor.seconds()
        self.ended_d: Deferred[None] = Deferred()
        self._buffer = b""
        self._control = control
        self.side = WorkerSide(pool.coordinator, number, self._to_worker)

    def _to_worker(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.writeToChild(0, data)

    def connectionMade(self) -> None:
        self.pool.coordinator.joined(self.number, self.side)

    def signal(self, number: int) -> None:
        try:
            if self.transport is not None:
                self.transport.signalProcess(number)
        except Exception:
            pass  # already gone

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == self._control:
            self.side.dataReceived(data)
            return
        # jsonFileLogObserver writes "\x1e" + JSON + "\n" per event.
        self._buffer += data
        *records, self._buffer = self._buffer.split(b"\n")
        for record in records:
            text = record.lstrip(b"\x1e").decode("utf-8", "replace")
            if not text.strip():
                continue
            try:
                event = eventFromJSON(text)
            except ValueError:
                event = {"log_format": "{line}", "line": text}
                event["log_level"] = LogLevel.info
                event["log_namespace"] = "wsecho.daemon.workers.pool"
                event["log_time"] = self.pool.reactor.seconds()
            event["worker"] = self.number
            level = event.get("log_level")
            event["log_system"] = (
                f"{event.get('log_namespace', '-')}"
                f"#{level.name if level else '-'} worker={self.number}"
            )
            globalLogPublisher(event)

    def processEnded(self, reason: Failure) -> None:
        self.pool.coordinator.left(self.number, self.side)
        self.pool.ended(self, reason)
        self.ended_d.callback(None)


class AdoptedPort(Service):
    """
    A listening socket handed over by the parent, adopted with a factory.
    """

    def __init__(self, fd: int, factory: Any, reactor: Any) -> None:
        self.fd = fd
        self.factory = factory
        self.reactor = reactor
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        family = socket.socket(fileno=os.dup(self.fd))
        try:
            domain = family.family
        finally:
            family.close()
        self.port = self.reactor.adoptStreamPort(self.fd, domain, self.factory)
        os.close(self.fd)  # adoptStreamPort took a copy

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


def worker_service(
    options: Any,
    fds: Sequence[int],
    reactor: Any,
    control: int | None = None,
    parent_gone: Callable[[], None] = lambda: None,
) -> Any:
    """
    A worker's service: the echo site on the descriptors passed, and its
    link to the parent (its stdin, and the descriptor C{control}) for the
    daemon's connection slots and metrics; C{parent_gone} is called when
    that link ends.
    """

    site = make_site(options.settings())
    if control is not None:
        context = site.context
        link = ParentLink(lambda: context.metrics.registry, parent_gone)
        StandardIO(link, stdin=0, stdout=control, reactor=reactor)  # type: ignore[call-arg]
        context.registry.link = link
    service = EchoService.from_options(site, options, reactor)
    for fd, description in zip(fds, options["listen"], strict=True):
        factory: Any = site
        if is_tls(description):
            endpoint = endpoints.serverFromString(reactor, description)
            tls = ReloadableTLS(
                description, reactor, endpoint, alpn(site.h2_connect is not None)
            )
            service.tls.append(tls)
            factory = TLSMemoryBIOFactory(tls, False, site)
        AdoptedPort(fd, factory, reactor).setServiceParent(service)
    return service
