"""Prometheus metrics of one ingress replica, in a registry of its own.

A private :class:`CollectorRegistry` rather than the process-global one: a Serve replica
shares its process with Ray's own collectors, and two replicas in one process (tests) must
not collide on metric names. ``/metrics`` answers with this replica's counts; a scraper
sums the replicas.

Besides requests and decisions: the distribution of the scores served, the age and identity of
the models serving (``ddso_model_age_seconds``, ``ddso_model_info``), the drift of the served
features against the propensity model's training rows (``ddso_feature_psi``, by
:class:`ddso.monitoring.DriftMonitor`) and, with Redis, how long ago the stream job last
updated the online features. Those last three are computed when scraped, never per request.
The alert rules over these names are in ``monitoring/alerts.yaml``.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from starlette.responses import Response

from ddso.config import Settings
from ddso.errors import DdsoError, UserError
from ddso.models.registry import ModelRegistry, ModelVersion
from ddso.monitoring import DRIFT_REFERENCE_FILE, DriftMonitor, DriftReference

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROPENSITY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
"""Purchase propensities are mostly a few percent: fine buckets at the low end."""
HEALTH_BUCKETS = (300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0)
"""Health points 0-1000; 400/500/600/700 are the floors of bands D/C/B/A."""


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
            "Decisions by action (channel and whether an offer was made), exploration and "
            "experiment arm ('none' outside an experiment).",
            ["channel", "offer", "explored", "arm"],
            registry=self.registry,
        )
        self.propensity = Histogram(
            "ddso_score_propensity",
            "Calibrated purchase propensity of each decision.",
            buckets=PROPENSITY_BUCKETS,
            registry=self.registry,
        )
        self.health_score = Histogram(
            "ddso_score_health",
            "Financial health score (0-1000) of each decision.",
            buckets=HEALTH_BUCKETS,
            registry=self.registry,
        )
        self.inputs = Counter(
            "ddso_decision_inputs",
            "Decisions by where their features came from: cold start (unknown customer) and "
            "degraded (the online store failed, snapshot values served).",
            ["cold_start", "degraded"],
            registry=self.registry,
        )
        self.models: dict[str, ModelVersion] = {}
        self.drift: DriftMonitor | None = None
        self.stream_health: Callable[[], Mapping[str, Any]] | None = None
        self.registry.register(_ScrapeTime(self))

    def decision(
        self, channel: str | None, offer_id: str | None, explored: bool,
        arm: str | None = "none",
    ) -> None:
        self.decisions.labels(
            channel or "none", "yes" if offer_id else "no", "yes" if explored else "no",
            arm or "none",
        ).inc()

    def scored(
        self, scores: Mapping[str, Any], features: Mapping[str, float], cold_start: bool,
        degraded: bool,
    ) -> None:
        """Count one decision's scores and inputs; its features feed the drift monitor (not
        a cold start's: those are the defaults of an unknown customer, not the population)."""
        self.propensity.observe(scores["propensity"])
        self.health_score.observe(scores["health_score"])
        self.inputs.labels("yes" if cold_start else "no", "yes" if degraded else "no").inc()
        if self.drift is not None and not cold_start:
            self.drift.update(features)

    def watch_models(self, registry: ModelRegistry, names: tuple[str, ...], drift_of: str) -> str:
        """Export the age and identity of each named model's champion (those that have one),
        and watch the served features against ``drift_of``'s training rows.

        Returns the drift monitor's status for ``/readyz``: ``on (...)`` or why it is off.
        Call it again after loading new champions.
        """
        for name in names:
            try:
                self.models[name] = registry.champion(name)
            except UserError:
                self.models.pop(name, None)
        version = self.models.get(drift_of)
        self.drift = None
        if version is None:
            return f"off: no {drift_of} model"
        label = f"{version.name}:{version.version}"
        try:
            reference = DriftReference.of_version(version)
        except UserError as e:  # a damaged reference costs the drift metrics, not the replica
            log.warning("feature drift metrics are off: %s", e)
            return f"off: {e}"
        if reference is None:
            log.warning("feature drift metrics are off: %s was registered without %s; "
                        "retrain it to get them", label, DRIFT_REFERENCE_FILE)
            return f"off: {label} was registered without {DRIFT_REFERENCE_FILE}"
        self.drift = DriftMonitor(reference)
        return f"on ({label}, {len(reference.features)} features)"

    def watch_stream(self, settings: Settings) -> None:
        """With Redis, export how long ago the stream job updated the online features the
        replicas read (from its health record); without, the replicas read a snapshot only."""
        if settings.redis.url is None:
            self.stream_health = None
            return
        from ddso.stream_health import stream_health

        self.stream_health = lambda: stream_health(settings)

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)


class _ScrapeTime:
    """The series computed when scraped: model age and info, feature PSI, stream freshness."""

    def __init__(self, metrics: ApiMetrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        now = time.time()
        age = GaugeMetricFamily(
            "ddso_model_age_seconds",
            "Seconds since the serving champion of each model was registered (trained).",
            labels=["model", "version"],
        )
        info = InfoMetricFamily(
            "ddso_model", "The champion version serving each model.",
            labels=["model", "version", "sha256"],
        )
        for name, v in list(m.models.items()):
            created = datetime.fromisoformat(v.metadata["created_at"]).timestamp()
            age.add_metric([name, v.version], now - created)
            info.add_metric([name, v.version, v.artifact_sha256[:16]], {})
        yield age
        yield info
        drift = m.drift
        if drift is not None:
            psi = GaugeMetricFamily(
                "ddso_feature_psi",
                "Population stability index of each served feature against the propensity "
                "model's training rows, over a decaying window of decisions (absent until the "
                "window holds enough). < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant.",
                labels=["feature"],
            )
            for feature, value in drift.psi().items():
                psi.add_metric([feature], value)
            yield psi
            yield GaugeMetricFamily(
                "ddso_drift_window_decisions",
                "Effective number of decisions in the drift window.",
                value=drift.observations,
            )
        if m.stream_health is not None:
            try:
                health = m.stream_health()
            except DdsoError as e:
                log.warning("stream health unavailable: %s", e)
                return
            since = health.get("seconds_since_last_batch")
            if since is not None:
                yield GaugeMetricFamily(
                    "ddso_online_features_age_seconds",
                    "Seconds since the stream job last applied a batch to the online store "
                    "these replicas read.",
                    value=since,
                )


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
