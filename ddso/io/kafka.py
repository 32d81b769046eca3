"""Kafka at the edge: client settings, a keyed event producer, consumers and topic setup.

Every client is built by a function that takes :class:`~ddso.config.KafkaSettings`; nothing
connects at import. Connection failures become :class:`~ddso.errors.ServiceError` naming the
bootstrap servers. Records travel as raw bytes: events are encoded by
:func:`~ddso.schemas.events.encode_event` and decoded by the one parser,
:func:`~ddso.schemas.events.parse_event`, in the stream job.

Delivery is at-least-once: consumers never auto-commit; the stream job calls
:func:`commit_offsets` only after its sinks hold the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from kafka.structs import OffsetAndMetadata, TopicPartition

from ddso.config import KafkaSettings
from ddso.errors import ConfigError, ServiceError
from ddso.schemas.events import EventBase, encode_event

__all__ = [
    "EventProducer",
    "TopicPartition",
    "client_kwargs",
    "commit_offsets",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "next_offsets",
]

BOOTSTRAP_TIMEOUT_MS = 10_000
"""How long a new client waits for the first metadata before giving up (kafka-python: 30 s)."""

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    # Idempotence lets the broker drop retried duplicates and keeps per-partition order with up
    # to 5 requests in flight; without it, ordering under retries would need exactly 1.
    "enable_idempotence": True,
    "max_in_flight_requests_per_connection": 5,
    "retries": 2**31 - 1,
    "delivery_timeout_ms": 120_000,
    # A few ms of lingering fills batches at stream rates yet stays far under the 1 s freshness
    # target; gzip is in the standard library (lz4/snappy/zstd need extra packages).
    "linger_ms": 5,
    "batch_size": 256 * 1024,
    "compression_type": "gzip",
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    # Measured against the test broker: default timeouts make a group join take ~23 s,
    # these ~3 s. A micro-batch is well under a second of work, so 10 s between polls is
    # ample, and a dead consumer is noticed within 6 s.
    "session_timeout_ms": 6_000,
    "heartbeat_interval_ms": 500,
    "max_poll_interval_ms": 10_000,
    "max_poll_records": 5_000,
}


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments shared by every kafka-python client.

    The result holds the SASL password in clear: pass it to a client, never log it.
    Raises :class:`ConfigError` when ``bootstrap_servers`` is unset or SASL is incomplete.
    """
    if kafka.bootstrap_servers is None:
        raise ConfigError(
            "kafka.bootstrap_servers is not set: set DDSO_KAFKA__BOOTSTRAP_SERVERS (host:port,...) "
            "or use the embedded local event log"
        )
    servers = [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()]
    if not servers:
        raise ConfigError(
            f"kafka.bootstrap_servers {kafka.bootstrap_servers!r} names no server; "
            "expected host:port[,host:port...]"
        )
    kwargs: dict[str, Any] = {
        "bootstrap_servers": servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol.startswith("SASL"):
        if not (kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password):
            raise ConfigError(
                f"kafka.security_protocol {kafka.security_protocol} needs kafka.sasl_mechanism, "
                "kafka.sasl_username and kafka.sasl_password; set all three"
            )
        kwargs.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password.get_secret_value(),
        )
    return kwargs


def _connect(kind: str, factory: Callable[..., Any], kafka: KafkaSettings, *args: Any,
             **config: Any) -> Any:
    """Build a client, turning "no broker answered" into a :class:`ServiceError`."""
    config = {"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS, **client_kwargs(kafka), **config}
    try:
        return factory(*args, **config)
    except KafkaError as e:
        raise ServiceError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} to start a {kind} "
            f"({type(e).__name__}: {e}); check kafka.bootstrap_servers and that the brokers are up"
        ) from e


def make_producer(kafka: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer tuned for throughput without giving up safety (acks=all, idempotent)."""
    return _connect("producer", KafkaProducer, kafka, **{**PRODUCER_DEFAULTS, **overrides})


def make_consumer(kafka: KafkaSettings, group_id: str, topics: Iterable[str],
                  **overrides: Any) -> KafkaConsumer:
    """A consumer in ``group_id`` subscribed to ``topics``; keys and values stay raw bytes.

    Auto-commit is off: commit with :func:`commit_offsets` once the batch is in the sinks.
    """
    return _connect("consumer", KafkaConsumer, kafka, *topics,
                    **{**CONSUMER_DEFAULTS, "group_id": group_id, **overrides})


def ensure_topics(kafka: KafkaSettings, topics: Mapping[str, int], *,
                  replication_factor: int = -1, timeout_s: float = 10.0) -> list[str]:
    """Create the topics ``{name: partitions}`` that do not exist yet; return those created.

    Idempotent: a topic that already exists is left as it is (its partition count is not
    changed). ``replication_factor=-1`` takes the brokers' default. Blocks until the new
    topics have leaders, so a producer started next can use them at once.
    """
    admin = _connect("admin client", KafkaAdminClient, kafka)
    try:
        response = admin.create_topics(
            {name: {"num_partitions": n, "replication_factor": replication_factor}
             for name, n in topics.items()},
            timeout_ms=int(timeout_s * 1000),
            raise_errors=False,
        )
        created = []
        for result in response["topics"]:
            error = for_code(result["error_code"])
            if result["error_code"] == 0:
                created.append(result["name"])
            elif error is not TopicAlreadyExistsError:
                raise ServiceError(
                    f"Kafka at {kafka.bootstrap_servers} refused to create topic "
                    f"{result['name']!r}: {error.__name__} ({result['error_message']})"
                )
        if created:
            admin.wait_for_topics(created, timeout_ms=int(timeout_s * 1000))
        return created
    except KafkaError as e:
        raise ServiceError(
            f"creating topics {sorted(topics)} on Kafka at {kafka.bootstrap_servers} failed "
            f"({type(e).__name__}: {e})"
        ) from e
    finally:
        admin.close()


def next_offsets(
    batch: Mapping[TopicPartition, list[ConsumerRecord]],
) -> dict[TopicPartition, int]:
    """The offsets to commit after ``batch`` (a ``poll()`` result): last offset + 1 each."""
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}


def commit_offsets(consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
    """Commit ``{partition: next offset to read}`` for the consumer's group, synchronously.

    Call it only after the sinks hold every record below those offsets (at-least-once). A
    failure (e.g. the group rebalanced meanwhile) raises :class:`ServiceError`; the records
    are then delivered again, which idempotent sinks absorb.
    """
    if not offsets:
        return
    try:
        consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
    except KafkaError as e:
        raise ServiceError(
            f"committing offsets for group {consumer.config['group_id']!r} failed "
            f"({type(e).__name__}: {e}); the uncommitted records will be delivered again"
        ) from e


class EventProducer:
    """Sends events to one topic, keyed by ``customer_id``.

    The key pins each customer to one partition, so one customer's events stay in order.
    Sends are asynchronous; :meth:`flush` waits for them and raises :class:`ServiceError` if
    any failed since the previous flush, so a caller that flushed without error knows every
    record is acknowledged by all in-sync replicas.
    """

    def __init__(self, producer: KafkaProducer, topic: str):
        self._producer = producer
        self.topic = topic
        self._failed = 0
        self._first_error: BaseException | None = None

    def _on_error(self, error: BaseException) -> None:
        self._failed += 1
        if self._first_error is None:
            self._first_error = error

    def send(self, event: EventBase) -> None:
        """Queue one event, encoded canonically, keyed by its customer."""
        self.send_raw(event.customer_id.encode(), encode_event(event))

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Queue arbitrary bytes (replays, dead letters, poison-message tests)."""
        try:
            future = self._producer.send(self.topic, key=key, value=value)
        except KafkaError as e:
            raise ServiceError(
                f"cannot send to topic {self.topic!r} at "
                f"{self._producer.config['bootstrap_servers']} ({type(e).__name__}: {e})"
            ) from e
        future.add_errback(self._on_error)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued record is acknowledged; raise if any was not."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as e:
            raise ServiceError(
                f"flushing to topic {self.topic!r} timed out after {timeout_s} s ({e})"
            ) from e
        if self._failed:
            failed, error = self._failed, self._first_error
            self._failed, self._first_error = 0, None
            raise ServiceError(
                f"{failed} record(s) sent to topic {self.topic!r} were not acknowledged; "
                f"first error: {type(error).__name__}: {error}"
            ) from error

    def close(self, timeout_s: float | None = None) -> None:
        """Flush what is queued and close the underlying producer."""
        try:
            self.flush(timeout_s)
        finally:
            self._producer.close(timeout=timeout_s)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
