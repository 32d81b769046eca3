"""Prometheus metrics of one ingress replica, in a registry of its own.

A private :class:`CollectorRegistry` rather than the process-global one: a Serve replica
shares its process with Ray's own collectors, and two replicas in one process (tests) must
not collide on metric names. ``/metrics`` answers with this replica's counts; a scraper
sums the replicas.
"""

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)


class MetricsMiddleware:
    """Pure ASGI middleware counting requests by route template (ids stay out of labels).

    The router records the matched route in the request's scope, which is the dict this
    middleware passed down, so the template is known once the app returns.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(endpoint, scope["method"], status, time.perf_counter() - start)
