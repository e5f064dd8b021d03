"""
C{/metrics}: the echo's metrics in Prometheus' text format (with --workers,
the whole daemon's, merged by the parent).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.web import server

from wsecho.http.pages import Styled
from wsecho.ws.metrics import Metrics
from wsecho.ws.registry import Registry


class MetricsResource(Styled):
    """
    C{/metrics}: the registry in Prometheus' text format.
    """

    isLeaf = True

    def __init__(self, metrics: Metrics, connections: Registry) -> None:
        super().__init__()
        self._registry = metrics.registry
        # With --workers, the connections' link to the parent, which merges
        # every worker's metrics.
        self._connections = connections

    def render_GET(self, request: server.Request) -> Any:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        link = self._connections.link
        if link is None:
            return generate_latest(self._registry)

        def answer(text: bytes) -> None:
            request.write(text)
            request.finish()

        def failed(reason: object) -> None:
            request.setResponseCode(503)
            request.write(b"the daemon's metrics are not available now\n")
            request.finish()

        link.scrape().addCallbacks(answer, failed)
        return server.NOT_DONE_YET
