"""
The twistd plugin's module: its options, and the service they make
(C{twistd -n wsecho --port 8181}).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorCore

from wsecho import __version__
from wsecho.daemon.options import Options
from wsecho.daemon.service import EchoService
from wsecho.http.site import make_site

__all__ = ["Options", "makeService"]


def makeService(options: Options, reactor: IReactorCore | None = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = cast(IReactorCore, default_reactor)
    if options["workers"] > 1:
        from wsecho.daemon.workers.pool import WorkerPool

        pool = WorkerPool(
            options["workers"],
            options["listen"],
            options.arguments,
            # What a worker may take to stop: the drain, then the clients.
            options["drain-delay"] + options["shutdown-timeout"],
            reactor,
            max_connections=options["max-connections"],
            max_connections_per_ip=options["max-connections-per-ip"],
        )
        pool.startup = startup_line(options)
        return _listening(pool, options)
    site = make_site(options.settings())
    parent = EchoService.from_options(site, options, reactor)
    parent.startup = startup_line(options)
    for description in options["listen"]:
        parent.listen(description)
    return _listening(parent, options)


def _listening(service: IService, options: Options) -> IService:
    """
    Under twistd, listen at once, before it writes its pidfile and forks
    into the background: a port in use or a bad address then exits with
    one line on the terminal and status 1. Listening later, in the child
    twistd forks without C{-n}, the error went only to twistd.log, as an
    exit that twistd does not report: its parent waited for ever, and the
    pidfile stayed. twistd's own call of C{privilegedStartService} then
    finds it done. This is still as root, before twistd sheds privileges.

    Not with twistd's C{--chroot} or C{--rundir}: twistd moves before it
    listens, and a UNIX socket's path depends on where it is.
    """
    parent = getattr(options, "parent", None)
    if parent is not None:
        # twistd logs: its observers get a limit on repeats once it has
        # begun (wsecho.daemon.logs.limit_repeats).
        cast(Any, service).limit_log_repeats = True
    if parent is None or parent.get("chroot") or parent.get("rundir", ".") != ".":
        return service
    service.privilegedStartService()
    return service


def startup_line(options: Options) -> dict[str, Any]:
    """
    The start-up line's fields but where it listens, which the service
    says once it does (L{wsecho.daemon.process.announce}).
    """
    return {
        "version": __version__,
        "workers": options["workers"],
        # Whether HTTP/2 (and WebSockets over it, RFC 8441) is on.
        "http": "HTTP/1.1 only" if options["no-http2"] else "HTTP/1.1 and HTTP/2",
        "options": " ".join(options.changed()) or "defaults",
        "warnings": list(options.warnings),
    }
