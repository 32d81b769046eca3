"""Publishing events into the stream: a generated dataset replayed into Kafka or the local log.

Records are keyed by customer id (one customer -> one partition, in order) and encoded as the
canonical event JSON the one parser reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ddso.config import Settings
from ddso.data.dataset import Dataset, event_rows_to_json
from ddso.io.eventlog import LocalEventLog
from ddso.io.kafka import EventProducer, ensure_topics, make_producer


def dataset_records(
    data_dir: str | Path, batch_rows: int = 50_000
) -> Iterable[list[tuple[bytes, bytes]]]:
    """The dataset's events as batches of ``(key, value)`` records, in file order."""
    for table in Dataset(data_dir).iter_event_batches(batch_rows):
        keys = [c.encode() for c in table["customer_id"].to_pylist()]
        yield list(zip(keys, event_rows_to_json(table), strict=True))


def publish(
    settings: Settings, batches: Iterable[list[tuple[bytes | None, bytes]]], partitions: int = 4
) -> int:
    """Append record batches to the events topic (Kafka) or the local log; returns the count."""
    n = 0
    if settings.kafka.bootstrap_servers:
        ensure_topics(settings.kafka, {settings.kafka.events_topic: partitions})
        with EventProducer(make_producer(settings.kafka), settings.kafka.events_topic) as producer:
            for batch in batches:
                for key, value in batch:
                    producer.send_raw(key, value)
                n += len(batch)
            producer.flush()
        return n
    log = LocalEventLog(
        settings.event_log_path(), partitions=None if _exists(settings) else partitions
    )
    try:
        for batch in batches:
            log.append(batch)
            n += len(batch)
    finally:
        log.close()
    return n


def _exists(settings: Settings) -> bool:
    return (settings.event_log_path() / "meta.json").exists()
