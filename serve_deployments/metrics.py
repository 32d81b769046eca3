"""Prometheus metrics of one ingress replica, in a registry of its own.

A private :class:`CollectorRegistry` rather than the process-global one: a Serve replica
shares its process with Ray's own collectors, and two replicas in one process (tests) must
not collide on metric names. ``/metrics`` answers with this replica's counts; a scraper
sums the replicas.
"""

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response

_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ddso_http_requests",
            "HTTP requests by endpoint (route template, never the raw path) and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ddso_http_request_seconds",
            "Time spent in the application per request, by endpoint.",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "ddso_decisions",
            "Decisions by action (channel and whether an offer was made) and exploration.",
            ["channel", "offer", "explored"],
            registry=self.registry,
        )

    def decision(self, channel: str | None, offer_id: str | None, explored: bool) -> None:
        self.decisions.labels(
            channel or "none", "yes" if offer_id else "no", "yes" if explored else "no"
        ).inc()

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """An HTTP middleware counting requests by route template (ids stay out of labels)."""
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.requests.labels(endpoint, request.method, str(status)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - start)
