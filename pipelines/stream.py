"""The stream job: events topic (or the local log) -> online + offline stores, at least once.

Each consumer loops: poll a micro-batch -> :class:`ddso.stream.StreamProcessor` (parse,
dead-letter, dedupe, lateness, features into the online store, events into the offline store)
-> commit the offsets. If a sink fails (Redis down, disk full) it does not commit: it backs off
and retries the same records until they go through, so nothing is lost. It scales out by
running more consumers in the group as Ray actors, each owning its partitions.

    python -m pipelines.stream --consumers 2 --metrics-port 9464   # Prometheus on 9464, 9465

With ``stream.graph_refresh_s`` > 0 (default 60) each consumer also keeps the graph features
(:class:`ddso.stream.GraphRefresh`): rebuilt at start from the offline store, fed by every
batch, and written to the online store for the customers with new purchases or views every
``graph_refresh_s`` seconds and when the consumer stops.

Each consumer also writes a health record (lag, dead-letter and late rates, freshness) every
``--health-interval-s``, read by :func:`ddso.stream_health.stream_health`.
    ray job submit --working-dir . -- python -m pipelines.stream --consumers 4
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ddso.config import Settings, load_settings
from ddso.errors import ServiceError
from ddso.io.sources import Source, make_source
from ddso.stores.deadletter import DeadLetterSink
from ddso.stores.offline import OfflineStore
from ddso.stores.online import InMemoryOnlineStore, OnlineStore
from ddso.stream import BatchStats, GraphRefresh, StreamProcessor
from ddso.stream_health import StreamMonitor, health_store
from pipelines._cli import parse_args

log = logging.getLogger(__name__)

JOIN_GRACE_S = 60.0


@dataclass
class Args:
    config: str | None = None
    """YAML settings file (default: $DDSO_CONFIG, if set)."""
    consumers: int = 1
    """Consumer processes in the group (Ray actors when more than one)."""
    max_batch: int = 5000
    """Records per micro-batch at most."""
    poll_s: float = 0.2
    """How long one poll waits for records."""
    lateness_days: float = 7.0
    """Events older than a customer's newest event by more than this are routed, not applied."""
    idle_exit_s: float | None = None
    """Stop after this many seconds without records (default: run until stopped)."""
    max_retry_backoff_s: float = 5.0
    """Longest wait between retries of a batch whose sink failed."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (consumer i on port + i); default: not served."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics port binds to (0.0.0.0 for a scraper on another host)."""
    health_interval_s: float = 1.0
    """How often the health record (lag, dead-letter rate, freshness) is written."""


def make_online_store(settings: Settings) -> OnlineStore:
    """Redis when configured, else this process's memory (the embedded default)."""
    if settings.redis.url:
        from ddso.io.redis import make_redis, ping_or_raise
        from ddso.stores.redis_online import RedisOnlineStore

        client = make_redis(settings.redis)
        ping_or_raise(client, settings.redis.url)
        return RedisOnlineStore(client, settings.redis.key_prefix, settings.redis.feature_ttl_s)
    return InMemoryOnlineStore()


def make_processor(settings: Settings, args: Args, online: OnlineStore) -> StreamProcessor:
    root = Path(settings.offline_store_path())
    offline = OfflineStore(root)
    graph = None
    if settings.stream.graph_refresh_s > 0:
        graph = GraphRefresh.from_offline(online, offline, settings.stream.graph_refresh_s)
    return StreamProcessor(
        online,
        offline,
        OfflineStore(root / "late"),
        DeadLetterSink(root),
        lateness_s=args.lateness_days * 86_400,
        max_event_bytes=settings.kafka.max_event_bytes,
        graph=graph,
    )


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, *_: object) -> None:
        self.requested = True


def run_consumer(
    settings: Settings, args: Args, index: int = 0, online: OnlineStore | None = None
) -> dict[str, float]:
    """One consumer's loop; returns its totals when it stops (idle, or SIGTERM/SIGINT)."""
    stop = _Stop()
    # Outside the main thread (a Ray worker thread) signals cannot be set: stop by idleness.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, stop)
    online = online or make_online_store(settings)
    processor = make_processor(settings, args, online)
    source = make_source(settings, index=index, consumers=args.consumers)
    monitor = start_monitor(settings, args, index, source)
    totals = BatchStats()
    first_records: float | None = None  # busy time starts at the first records, not the join
    last_records = time.monotonic()
    try:
        while not stop.requested:
            batch = source.poll(args.max_batch, args.poll_s)
            monitor.tick()
            if processor.graph is not None:
                processor.graph.maybe_refresh()
            if not batch:
                idle_s = time.monotonic() - last_records
                # Before the first records a group join may still be running (seconds, tens
                # under load), so idleness counts only after a grace period.
                limit = (
                    args.idle_exit_s if first_records else (args.idle_exit_s or 0) + JOIN_GRACE_S
                )
                if args.idle_exit_s is not None and idle_s > limit:
                    break
                continue
            if first_records is None:
                first_records = time.monotonic()
            for partition, records in batch.items():
                stats = _process_until_done(processor, partition, records, args)
                totals.add(stats)
                monitor.batch(stats)
            try:
                source.commit({p: recs[-1].offset + 1 for p, recs in batch.items()})
            except ServiceError as e:
                # A rebalance moved the partitions: the new owner gets these records again,
                # and the idempotent sinks absorb them.
                log.warning("commit failed, records will be redelivered: %s", e)
            last_records = time.monotonic()
        if processor.graph is not None:
            processor.graph.refresh()  # what changed since the last refresh, before stopping
    finally:
        monitor.tick(force=True)
        monitor.close()
        source.close()
    busy_s = max(last_records - (first_records or last_records), 1e-9)
    return {
        "received": totals.received,
        "applied": totals.applied,
        "duplicates": totals.duplicates,
        "dead_letters": totals.dead_letters,
        "late": totals.late,
        "busy_s": busy_s,
        "events_per_s": totals.received / busy_s,
        "freshness_ms": totals.freshness_ms,  # type: ignore[dict-item]
    }


def start_monitor(settings: Settings, args: Args, index: int, source: Source) -> StreamMonitor:
    """This consumer's data-quality metrics, served on ``metrics_port + index`` if set."""
    monitor = StreamMonitor(
        f"{settings.kafka.group_id}-{index}",
        source,
        health_store(settings),
        source_kind="kafka" if settings.kafka.bootstrap_servers else "local_log",
        interval_s=args.health_interval_s,
    )
    if args.metrics_port is not None:
        monitor.serve(args.metrics_host, args.metrics_port + index)
    return monitor


def _process_until_done(
    processor: StreamProcessor, partition: str, records, args: Args
) -> BatchStats:
    backoff = 0.1
    while True:
        try:
            return processor.process(partition, records)
        except ServiceError as e:
            log.warning(
                "sink failed for %s (%d records), retrying in %.1fs: %s",
                partition,
                len(records),
                backoff,
                e,
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, args.max_retry_backoff_s)


def main(args: Args) -> list[dict[str, float]]:
    settings = load_settings(args.config)
    if args.consumers == 1:
        return [run_consumer(settings, args)]
    import ray

    from ddso.runtime import init_ray

    init_ray(settings)
    consumer = ray.remote(num_cpus=1)(run_consumer)
    return ray.get([consumer.remote(settings, args, i) for i in range(args.consumers)])


if __name__ == "__main__":
    for totals in main(parse_args(Args)):
        print({k: v for k, v in totals.items() if k != "freshness_ms"})
