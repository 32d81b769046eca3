"""Kafka adapters against the real Kafka-protocol broker (tansu): no fakes."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import SecretStr

from ddso.config import KafkaSettings
from ddso.errors import ConfigError, EventParseError, ServiceError
from ddso.io.kafka import (
    EventProducer,
    TopicPartition,
    client_kwargs,
    commit_offsets,
    ensure_topics,
    make_consumer,
    make_producer,
    next_offsets,
)
from ddso.schemas.events import View, encode_event, parse_event

N_EVENTS = 1_000
N_CUSTOMERS = 40
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _events(n: int) -> list[View]:
    return [
        View(type="view", event_id=f"e{i:05d}", customer_id=f"c{i % N_CUSTOMERS:03d}",
             event_time=T0 + timedelta(seconds=i), source="web", session_id=f"s{i % 97}",
             product_id=f"p{i % 13}", price=10.0 + i % 50)
        for i in range(n)
    ]


def _drain(consumers: dict[str, KafkaConsumer], expected: dict[str, int],
           timeout_s: float = 60.0) -> dict[str, list[ConsumerRecord]]:
    """Poll the consumers in turn (so their group joins overlap) until each has ``expected``."""
    got: dict[str, list[ConsumerRecord]] = {name: [] for name in consumers}
    deadline = time.monotonic() + timeout_s
    while any(len(got[n]) < expected[n] for n in consumers):
        assert time.monotonic() < deadline, {n: len(r) for n, r in got.items()}
        for name, consumer in consumers.items():
            if len(got[name]) < expected[name]:
                for records in consumer.poll(timeout_ms=100).values():
                    got[name].extend(records)
    return got


def _by_partition(records: list[ConsumerRecord]) -> dict[int, list[int]]:
    offsets: dict[int, list[int]] = defaultdict(list)
    for r in records:
        offsets[r.partition].append(r.offset)
    return offsets


@pytest.mark.integration
def test_produce_consume_commit_and_resume(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.events_topic
    assert ensure_topics(kafka_settings, {topic: 3}) == [topic]
    assert ensure_topics(kafka_settings, {topic: 3}) == []  # idempotent

    events = _events(N_EVENTS)
    with EventProducer(make_producer(kafka_settings), topic) as producer:
        for event in events:
            producer.send(event)
        producer.send_raw(b"poison", b"{not json")
        producer.flush()
    total = N_EVENTS + 1

    group = kafka_settings.group_id
    first = make_consumer(kafka_settings, group, [topic])
    records = _drain({"first": first}, {"first": total})["first"]
    assert len(records) == total

    parsed, poison = [], []
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for r in records:
        partitions_of[r.key].add(r.partition)
        try:
            parsed.append(parse_event(r.value))
        except EventParseError as e:
            poison.append(e.reason)
    assert poison == ["bad_json"]
    assert all(len(ps) == 1 for ps in partitions_of.values())  # a key lives in one partition
    assert len({p for ps in partitions_of.values() for p in ps}) == 3
    assert sorted(encode_event(e) for e in parsed) == sorted(encode_event(e) for e in events)
    per_customer: dict[str, list[str]] = defaultdict(list)
    for event in parsed:
        per_customer[event.customer_id].append(event.event_id)
    assert all(ids == sorted(ids) for ids in per_customer.values())  # sent order kept per key

    ends = next_offsets({TopicPartition(topic, p): [r for r in records if r.partition == p]
                         for p in range(3)})
    assert sum(ends.values()) == total
    committed = {tp: end // 2 for tp, end in ends.items()}
    commit_offsets(first, committed)
    first.close()

    # The same group resumes exactly at the commits; a new group starts from offset 0.
    resumed = make_consumer(kafka_settings, group, [topic])
    fresh = make_consumer(kafka_settings, f"{group}-other", [topic])
    try:
        got = _drain({"resumed": resumed, "fresh": fresh},
                     {"resumed": total - sum(committed.values()), "fresh": total})
    finally:
        resumed.close()
        fresh.close()
    for tp, end in ends.items():
        assert _by_partition(got["resumed"])[tp.partition] == list(range(committed[tp], end))
        assert _by_partition(got["fresh"])[tp.partition] == list(range(end))


@pytest.mark.integration
def test_unreachable_bootstrap_raises_service_error() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9")  # discard port: nothing listens
    started = time.monotonic()
    with pytest.raises(ServiceError, match="127.0.0.1:9"):
        make_producer(settings, bootstrap_timeout_ms=500)
    with pytest.raises(ServiceError, match="127.0.0.1:9"):
        make_consumer(settings, "g", ["t"], bootstrap_timeout_ms=500)
    assert time.monotonic() - started < 10


@pytest.mark.unit
def test_client_kwargs() -> None:
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        client_kwargs(KafkaSettings())
    with pytest.raises(ConfigError, match="names no server"):
        client_kwargs(KafkaSettings(bootstrap_servers=" , "))
    assert client_kwargs(KafkaSettings(bootstrap_servers="a:9092, b:9092")) == {
        "bootstrap_servers": ["a:9092", "b:9092"], "security_protocol": "PLAINTEXT"}
    sasl = KafkaSettings(bootstrap_servers="a:9093", security_protocol="SASL_SSL",
                         sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
                         sasl_password=SecretStr("pw"))
    assert client_kwargs(sasl)["sasl_plain_password"] == "pw"
    with pytest.raises(ConfigError, match="sasl_password") as err:
        client_kwargs(sasl.model_copy(update={"sasl_password": None}))
    assert "pw" not in str(err.value).replace("sasl_password", "")
