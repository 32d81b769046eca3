"""The stream job's data quality: its metrics and the health record others read.

The embedded default (local log, in-process online store, health record in a file); the
Redis record store gets a round trip of its own against the real server.
"""

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ddso.config import load_settings
from ddso.io.eventlog import LocalEventLog
from ddso.io.publish import publish
from ddso.io.sources import KafkaSource, LocalLogSource
from ddso.stores.online import InMemoryOnlineStore
from ddso.stream_health import (
    DELAY_BUCKETS,
    FileHealthStore,
    StreamMonitor,
    consumer_lag,
    health_store,
    merge_health,
    stream_health,
)
from pipelines.stream import Args, make_processor, run_consumer
from tests.serve_deployments.conftest import free_port

NEWEST = datetime(2025, 3, 1, tzinfo=UTC)


def _view(event_id: str, when: datetime, customer: str = "c1") -> tuple[bytes, bytes]:
    return customer.encode(), json.dumps({
        "type": "view", "event_id": event_id, "customer_id": customer,
        "event_time": when.isoformat(), "source": "web", "session_id": "s1",
        "product_id": "p1", "price": 10.0,
    }).encode()


def _records() -> list[tuple[bytes, bytes]]:
    """Ten good events, one poison message, then (a later batch) one event 30 days late."""
    good = [_view(f"e{i}", NEWEST - timedelta(hours=i)) for i in range(10)]
    return [*good[:5], (b"c1", b"{not json"), *good[5:], _view("old", NEWEST - timedelta(days=30))]


@pytest.mark.integration
def test_health_after_a_batch_with_a_poison_message_and_a_late_event(tmp_path):
    settings = load_settings(home=tmp_path)
    publish(settings, [_records()], partitions=1)
    args = Args(max_batch=11, poll_s=0.05, idle_exit_s=0.3)
    totals = run_consumer(settings, args, online=InMemoryOnlineStore())
    assert totals["received"] == 12 and totals["dead_letters"] == 1 and totals["late"] == 1

    now = NEWEST.timestamp() + 60
    health = stream_health(settings, now=now, stale_after_s=1e9)
    assert health["available"] and health["source"] == "local_log" and health["consumers"] == 1
    assert health["events"] == 12 and health["dead_letters"] == 1 and health["late"] == 1
    assert health["dead_letter_rate"] == pytest.approx(1 / 12)
    assert health["late_rate"] == pytest.approx(1 / 12)
    assert health["dead_letters_by_reason"] == {"bad_json": 1}
    assert health["lag"] == {"ddso.events-0": 0} and health["lag_total"] == 0
    assert health["newest_event_time"] == NEWEST.timestamp()  # the late one did not count
    assert health["freshness_s"] == pytest.approx(60)
    assert health["last_batch_at"] is not None and not health["stale"]
    assert health["ingestion_delay_p99_s"] is None  # the local log has no producer timestamps
    assert health["totals"]["applied"] == 10

    # New events not consumed yet: lag, as the next record would report it.
    with LocalEventLog(settings.event_log_path()) as log:
        log.append([_view("n1", NEWEST), _view("n2", NEWEST)])
    source = LocalLogSource(settings)
    try:
        assert consumer_lag(source) == {"ddso.events-0": 2}
    finally:
        source.close()
    # A health record not rewritten for a while says so.
    assert stream_health(settings, now=now + 1e9)["available"] is False
    later = health["updated_at"] + 3600
    assert stream_health(settings, now=later)["stale"] is True


@pytest.mark.integration
def test_stream_metrics_exposition_on_the_metrics_port(tmp_path):
    settings = load_settings(home=tmp_path)
    publish(settings, [_records()], partitions=1)
    args = Args()
    online = InMemoryOnlineStore()
    processor = make_processor(settings, args, online)
    source = LocalLogSource(settings)
    clock = [NEWEST.timestamp() + 30]
    monitor = StreamMonitor("ddso-stream-0", source, FileHealthStore(tmp_path / "h"),
                            source_kind="local_log", clock=lambda: clock[0])
    port = free_port()
    monitor.serve("127.0.0.1", port)
    try:
        for partition, records in source.poll(100, 1.0).items():
            monitor.batch(processor.process(partition, records))
        monitor.tick()
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        monitor.close()
        source.close()
    assert "ddso_stream_events_total 12.0" in text
    assert 'ddso_stream_dead_letters_total{reason="bad_json"} 1.0' in text
    assert "ddso_stream_late_events_total 1.0" in text
    assert 'ddso_stream_consumer_lag{partition="ddso.events-0"} 12.0' in text  # not committed
    assert "ddso_stream_event_age_seconds 30.0" in text
    assert "ddso_stream_newest_event_timestamp_seconds 1.7407872e+09" in text  # NEWEST
    assert 'ddso_stream_ingestion_delay_seconds_bucket{le="+Inf"} 0.0' in text
    assert "ddso_stream_last_batch_timestamp_seconds" in text


def _record(consumer, updated, lag, received, dead, delays=None):
    return {
        "consumer": consumer, "source": "kafka", "updated_at": updated, "started_at": 0.0,
        "last_batch_at": updated - 1, "newest_event_time": updated - 2, "lag": lag,
        "totals": {"received": received, "applied": received - dead, "duplicates": 0,
                   "dead_letters": dead, "late": 0},
        "dead_letters_by_reason": {"schema": dead} if dead else {},
        "window": {"seconds": 300, "received": received, "dead_letters": dead, "late": 0,
                   "delay_buckets": delays or [0] * (len(DELAY_BUCKETS) + 1)},
    }


@pytest.mark.unit
def test_merge_sums_consumers_and_keeps_the_newest_lag_of_a_partition():
    delays = [0] * (len(DELAY_BUCKETS) + 1)
    delays[DELAY_BUCKETS.index(0.5)] = 99
    delays[DELAY_BUCKETS.index(2.5)] = 1
    records = [
        _record("g-1", 100.0, {"t-1": 7, "t-2": 50}, 100, 0),
        _record("g-0", 90.0, {"t-0": 3, "t-2": 9}, 300, 3, delays),
        _record("g-9", 100.0 - 2 * 86_400, {"t-0": 1_000}, 5, 5),  # long gone: left out
    ]
    h = merge_health(records, now=101.0)
    assert h["consumers"] == 2 and h["lag"] == {"t-0": 3, "t-1": 7, "t-2": 50}
    assert h["lag_total"] == 60 and h["events"] == 400 and h["dead_letters"] == 3
    assert h["dead_letter_rate"] == pytest.approx(0.0075)
    assert h["dead_letters_by_reason"] == {"schema": 3}
    assert h["seconds_since_last_batch"] == pytest.approx(2.0)
    assert h["freshness_s"] == pytest.approx(3.0)
    assert h["ingestion_delay_p99_s"] == 0.5
    assert merge_health([], now=1.0)["available"] is False


@pytest.mark.integration
def test_redis_record_store_round_trip(redis_client, redis_settings, tmp_path):
    settings = load_settings(home=tmp_path, redis=redis_settings.model_dump())
    health_store(settings).write("g-0", _record("g-0", 50.0, {"t-0": 4}, 10, 1))
    h = stream_health(settings, now=51.0)
    assert h["available"] and h["lag"] == {"t-0": 4} and h["dead_letter_rate"] == 0.1
    assert redis_client.exists(redis_settings.key_prefix + "stream:health")


@pytest.mark.unit
def test_an_unreachable_redis_is_reported_not_raised(tmp_path):
    settings = load_settings(home=tmp_path, redis={"url": "redis://127.0.0.1:1/0"})
    h = stream_health(settings)
    assert h["available"] is False and "Redis" in h["detail"]


@pytest.mark.integration
def test_kafka_lag_is_end_offset_minus_position(kafka_settings, tmp_path):
    settings = load_settings(home=tmp_path, kafka=kafka_settings.model_dump())
    publish(settings, [[_view(f"k{i}", NEWEST) for i in range(5)]], partitions=1)
    source = KafkaSource(settings)
    try:
        got: dict = {}
        deadline = time.monotonic() + 60
        while sum(len(r) for r in got.values()) < 5 and time.monotonic() < deadline:
            for partition, records in source.poll(100, 0.5).items():
                got.setdefault(partition, []).extend(records)
        source.commit({p: recs[-1].offset + 1 for p, recs in got.items()})
        topic = kafka_settings.events_topic
        assert consumer_lag(source) == {f"{topic}-0": 0}
        # One publish per record: the test broker (tansu) reports a partition's end offset
        # as the base offset of its last record batch + 1, short of Kafka's for a batch of many.
        for i in (5, 6):
            publish(settings, [[_view(f"k{i}", NEWEST)]], partitions=1)
        assert consumer_lag(source) == {f"{topic}-0": 2}
    finally:
        source.close()
