"""
The twistd plugin's module: its options, and the service they make
(C{twistd -n wsecho --port 8181}).
"""

from __future__ import annotations

from typing import cast

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorCore

from wsecho.daemon.options import Options, startup_line
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
        return pool
    site = make_site(options.settings())
    parent = EchoService.from_options(site, options, reactor)
    parent.startup = startup_line(options)
    for description in options["listen"]:
        parent.listen(description)
    return parent
