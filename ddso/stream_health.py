"""Data quality of the stream job: its Prometheus metrics and a health record others can read.

The stream job and the API run in different processes (different pods in production), so the
job reports its state two ways:

- :class:`StreamMonitor` keeps a Prometheus registry of its own (events, dead letters by
  reason, late events, duplicates, consumer lag per partition, the newest event time applied,
  the time of the last batch, and the ingestion delay from the producer's timestamp to the
  online store, on Kafka), served on ``--metrics-port`` by ``pipelines.stream``;
- every ``interval_s`` it writes a small health record (JSON): to the Redis hash
  ``<prefix>stream:health`` (one field per consumer) when Redis is configured, else to
  ``<home>/stream_health/<consumer>.json``. :func:`stream_health` reads and merges them, for the
  API's ``/metrics`` and the dashboard.

Consumer lag is the end offset of each owned partition minus the consumer's position (on the
local log: minus the group's committed offset; on Kafka the position, which equals the
committed offset after each batch), measured when the record is written.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily, Metric

from ddso.config import Settings
from ddso.errors import ServiceError
from ddso.io.sources import KafkaSource, LocalLogSource, Source
from ddso.stream import BatchStats

log = logging.getLogger(__name__)

HEALTH_KEY = "stream:health"
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Ingestion delay buckets (seconds); the freshness target is p99 <= 1 s."""
STALE_AFTER_S = 30.0
"""A health record older than this means its consumer is down or stuck."""
FORGET_AFTER_S = 86_400.0
"""Records older than this (a consumer of an earlier, larger run) are left out."""


# --- where the records live ---------------------------------------------------------------


class HealthStore(Protocol):
    def write(self, consumer: str, record: dict[str, Any]) -> None: ...

    def read_all(self) -> list[dict[str, Any]]: ...


class FileHealthStore:
    """One JSON file per consumer in ``folder``, each replaced whole."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def write(self, consumer: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.folder)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.replace(tmp, self.folder / f"{consumer}.json")

    def read_all(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # replaced or removed while read: skip this once
                continue
        return out


class RedisHealthStore:
    """One field per consumer of the hash ``<prefix>stream:health``."""

    def __init__(self, client: Any, prefix: str, ttl_s: int = int(FORGET_AFTER_S)):
        self.client = client
        self.key = prefix + HEALTH_KEY
        self.ttl_s = ttl_s

    def write(self, consumer: str, record: dict[str, Any]) -> None:
        import redis

        try:
            pipe = self.client.pipeline()
            pipe.hset(self.key, consumer, json.dumps(record))
            pipe.expire(self.key, self.ttl_s)
            pipe.execute()
        except redis.RedisError as e:
            raise ServiceError(f"writing the stream health record to Redis failed ({e})") from e

    def read_all(self) -> list[dict[str, Any]]:
        import redis

        try:
            fields = self.client.hgetall(self.key)
        except redis.RedisError as e:
            raise ServiceError(f"reading the stream health records from Redis failed ({e})") from e
        return [json.loads(v) for v in fields.values()]


def health_store(settings: Settings) -> HealthStore:
    """Redis when configured (the API reads the same place), else files under ``<home>``."""
    if settings.redis.url:
        from ddso.io.redis import make_redis

        return RedisHealthStore(make_redis(settings.redis), settings.redis.key_prefix)
    return FileHealthStore(settings.home / "stream_health")


# --- the stream job's side ----------------------------------------------------------------


def consumer_lag(source: Source) -> dict[str, int]:
    """Records not yet processed per partition the consumer owns (see the module docstring)."""
    if isinstance(source, LocalLogSource):
        committed = source.log.committed(source.group)
        return {f"{source.topic}-{p}": source.log.end_offset(p) - committed.get(p, 0)
                for p in source.owned}
    if isinstance(source, KafkaSource):
        consumer = source.consumer
        assigned = list(consumer.assignment())
        if not assigned:
            return {}
        ends = consumer.end_offsets(assigned)
        return {f"{tp.topic}-{tp.partition}": max(0, ends[tp] - consumer.position(tp))
                for tp in assigned}
    return {}


class _DelayHistogram:
    """Ingestion delays counted per bucket in bulk (a batch's thousands at once)."""

    def __init__(self) -> None:
        self.edges = np.asarray(DELAY_BUCKETS)
        self.counts = np.zeros(len(DELAY_BUCKETS) + 1, dtype=np.int64)
        self.total = 0.0

    def observe(self, seconds: np.ndarray) -> np.ndarray:
        # le-buckets: a delay equal to a bound belongs to that bound's bucket.
        counts = np.bincount(np.searchsorted(self.edges, seconds, side="left"),
                             minlength=len(self.counts))
        self.counts += counts
        self.total += float(seconds.sum())
        return counts

    def collect(self) -> Iterator[Metric]:
        cumulative = np.cumsum(self.counts)
        buckets = [(str(le), float(c)) for le, c in zip(DELAY_BUCKETS, cumulative, strict=False)]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(
            "ddso_stream_ingestion_delay_seconds",
            "Producer timestamp -> the online store holds the event (Kafka records only).",
            buckets=buckets, sum_value=self.total,
        )


def quantile_from_buckets(counts: np.ndarray, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (inf past the last bound)."""
    total = counts.sum()
    if total == 0:
        return None
    i = int(np.searchsorted(np.cumsum(counts), q * total, side="left"))
    return float(DELAY_BUCKETS[i]) if i < len(DELAY_BUCKETS) else float("inf")


class StreamMonitor:
    """One consumer's data-quality metrics and health record (see the module docstring).

    Call :meth:`batch` with each processed partition batch and :meth:`tick` once per loop;
    :meth:`tick` writes the record (measuring lag) at most every ``interval_s`` seconds.
    """

    def __init__(
        self,
        consumer: str,
        source: Source,
        store: HealthStore | None,
        *,
        source_kind: str,
        interval_s: float = 1.0,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ):
        self.consumer = consumer
        self.source = source
        self.store = store
        self.source_kind = source_kind
        self.interval_s = interval_s
        self.window_s = window_s
        self.clock = clock
        self.started_at = clock()
        self.totals = BatchStats()
        self.last_batch_at: float | None = None
        self.lag: dict[str, int] = {}
        self._window: deque[tuple[float, int, int, int, np.ndarray]] = deque()
        self._last_write = float("-inf")
        self._server: tuple[Any, Any] | None = None
        r = self.registry = CollectorRegistry()
        self.events = Counter("ddso_stream_events", "Records received.", registry=r)
        self.applied = Counter("ddso_stream_applied", "Events applied to the online store.",
                               registry=r)
        self.duplicates = Counter("ddso_stream_duplicates", "Events seen before (skipped).",
                                  registry=r)
        self.dead = Counter("ddso_stream_dead_letters", "Records dead-lettered, by reason.",
                            ["reason"], registry=r)
        self.late = Counter("ddso_stream_late_events",
                            "Events older than their customer's newest by more than the "
                            "lateness bound: routed to the late store, never applied.",
                            registry=r)
        self.lag_gauge = Gauge("ddso_stream_consumer_lag",
                               "End offset minus this consumer's position, per partition.",
                               ["partition"], registry=r)
        self.newest_event = Gauge("ddso_stream_newest_event_timestamp_seconds",
                                  "Newest event time applied to the online store.", registry=r)
        self.last_batch = Gauge("ddso_stream_last_batch_timestamp_seconds",
                                "When the last batch was applied.", registry=r)
        Gauge("ddso_stream_event_age_seconds",
              "Now minus the newest event time applied: how far the online features are "
              "behind real time (NaN before the first event).",
              registry=r).set_function(self._event_age)
        self.delays = _DelayHistogram()
        r.register(self.delays)

    def serve(self, host: str, port: int) -> None:
        """Serve this registry at ``http://host:port/metrics`` from a daemon thread."""
        from prometheus_client import start_http_server

        self._server = start_http_server(port, host, registry=self.registry)
        log.info("stream metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            thread.join(timeout=5)
            self._server = None

    def _event_age(self) -> float:
        newest = self.totals.newest_event_s
        return float("nan") if newest is None else self.clock() - newest

    def batch(self, stats: BatchStats) -> None:
        """Count one processed partition batch."""
        now = self.clock()
        self.totals.add(stats)
        self.events.inc(stats.received)
        self.applied.inc(stats.applied)
        self.duplicates.inc(stats.duplicates)
        self.late.inc(stats.late)
        for reason, n in stats.dead_reasons.items():
            self.dead.labels(reason).inc(n)
        if self.totals.newest_event_s is not None:
            self.newest_event.set(self.totals.newest_event_s)
        delays = self.delays.observe(np.asarray(stats.freshness_ms, dtype=float) / 1000.0)
        self.last_batch_at = now
        self.last_batch.set(now)
        self._window.append((now, stats.received, stats.dead_letters, stats.late, delays))

    def tick(self, force: bool = False) -> None:
        """Write the health record if ``interval_s`` passed since the last (or ``force``)."""
        now = self.clock()
        if not force and now - self._last_write < self.interval_s:
            return
        self._last_write = now
        try:
            self.lag = consumer_lag(self.source)
        except Exception as e:  # lag is a figure, never a reason to stop consuming
            log.warning("measuring consumer lag failed: %s", e)
        self.lag_gauge.clear()  # partitions a rebalance took away drop out
        for partition, n in self.lag.items():
            self.lag_gauge.labels(partition).set(n)
        if self.store is None:
            return
        try:
            self.store.write(self.consumer, self.record(now))
        except (ServiceError, OSError) as e:
            log.warning("writing the stream health record failed: %s", e)

    def record(self, now: float) -> dict[str, Any]:
        """The health record (the fields :func:`stream_health` merges)."""
        while self._window and self._window[0][0] < now - self.window_s:
            self._window.popleft()
        w = self._window
        delays = sum((x[4] for x in w), np.zeros_like(self.delays.counts))
        t = self.totals
        return {
            "consumer": self.consumer,
            "source": self.source_kind,
            "updated_at": now,
            "started_at": self.started_at,
            "last_batch_at": self.last_batch_at,
            "newest_event_time": t.newest_event_s,
            "lag": dict(self.lag),
            "totals": {"received": t.received, "applied": t.applied,
                       "duplicates": t.duplicates, "dead_letters": t.dead_letters,
                       "late": t.late},
            "dead_letters_by_reason": dict(t.dead_reasons),
            "window": {"seconds": self.window_s, "received": sum(x[1] for x in w),
                       "dead_letters": sum(x[2] for x in w), "late": sum(x[3] for x in w),
                       "delay_buckets": delays.tolist()},
        }


# --- the readers' side --------------------------------------------------------------------


def merge_health(records: list[dict[str, Any]], now: float,
                 stale_after_s: float = STALE_AFTER_S) -> dict[str, Any]:
    """One view of the consumers' records (the contract of :func:`stream_health`)."""
    records = [r for r in records if now - r["updated_at"] <= FORGET_AFTER_S]
    if not records:
        return {"available": False, "detail": "no stream health record: is the stream job "
                "running (python -m pipelines.stream)?"}
    records.sort(key=lambda r: r["updated_at"])
    lag: dict[str, int] = {}
    reasons: dict[str, int] = {}
    totals = dict.fromkeys(records[-1]["totals"], 0)
    window = {"received": 0, "dead_letters": 0, "late": 0}
    delays = np.zeros(len(DELAY_BUCKETS) + 1)
    for r in records:  # oldest first: a partition moved by a rebalance keeps its newest lag
        lag.update(r["lag"])
        for k, n in r["dead_letters_by_reason"].items():
            reasons[k] = reasons.get(k, 0) + n
        for k in totals:
            totals[k] += r["totals"].get(k, 0)
        for k in window:
            window[k] += r["window"][k]
        delays += np.asarray(r["window"]["delay_buckets"])
    updated = records[-1]["updated_at"]
    batches = [r["last_batch_at"] for r in records if r["last_batch_at"] is not None]
    events = [r["newest_event_time"] for r in records if r["newest_event_time"] is not None]
    last_batch = max(batches, default=None)
    newest = max(events, default=None)
    received = window["received"]
    return {
        "available": True,
        "source": records[-1]["source"],
        "consumers": len(records),
        "updated_at": updated,
        "stale": now - updated > stale_after_s,
        "last_batch_at": last_batch,
        "seconds_since_last_batch": None if last_batch is None else now - last_batch,
        "newest_event_time": newest,
        "freshness_s": None if newest is None else now - newest,
        "ingestion_delay_p99_s": quantile_from_buckets(delays, 0.99),
        "lag": lag,
        "lag_total": sum(lag.values()),
        "window_s": records[-1]["window"]["seconds"],
        "events": received,
        "dead_letters": window["dead_letters"],
        "late": window["late"],
        "dead_letter_rate": window["dead_letters"] / received if received else None,
        "late_rate": window["late"] / received if received else None,
        "dead_letters_by_reason": reasons,
        "totals": totals,
    }


def stream_health(settings: Settings, now: float | None = None,
                  stale_after_s: float = STALE_AFTER_S) -> dict[str, Any]:
    """The stream job's health, merged over its consumers' records (see README, Monitoring).

    Never raises for a missing or unreachable record store: ``{"available": False,
    "detail": ...}`` says why.
    """
    now = time.time() if now is None else now
    try:
        records = health_store(settings).read_all()
    except ServiceError as e:
        return {"available": False, "detail": str(e)}
    return merge_health(records, now, stale_after_s)
