"""Where the API writes events and decisions: Kafka when configured, else the local log.

Events (``/v1/events``, ``/v1/feedback``) go to the events topic, keyed by customer, and are
acknowledged before the API answers (at-least-once; consumers dedupe by ``event_id``). On the
embedded default they are appended to the local event log, which allows one writer: the
ingress opens it on first use and keeps it (one replica on the embedded default).
Decision audit records go to the decisions topic only when Kafka is configured; the Parquet
audit log is always written (:mod:`ddso.audit`).
"""

import threading
from collections.abc import Sequence

from ddso.config import Settings
from ddso.io.eventlog import LocalEventLog
from ddso.io.kafka import EventProducer, make_producer
from ddso.schemas.events import EventBase, encode_event

NEW_LOG_PARTITIONS = 4


class EventSink:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._log: LocalEventLog | None = None
        self._events: EventProducer | None = None
        self._decisions: EventProducer | None = None
        self._lock = threading.Lock()

    @property
    def kafka(self) -> bool:
        return bool(self.settings.kafka.bootstrap_servers)

    def decisions_producer(self) -> EventProducer | None:
        """A producer for the decisions topic, or None without Kafka."""
        if not self.kafka:
            return None
        if self._decisions is None:
            kafka = self.settings.kafka
            self._decisions = EventProducer(make_producer(kafka), kafka.decisions_topic)
        return self._decisions

    def append(self, events: Sequence[EventBase]) -> None:
        """Write ``events`` durably (acknowledged by Kafka, or in the local log)."""
        records = [(e.customer_id.encode(), encode_event(e)) for e in events]
        with self._lock:
            if self.kafka:
                if self._events is None:
                    kafka = self.settings.kafka
                    self._events = EventProducer(make_producer(kafka), kafka.events_topic)
                for key, value in records:
                    self._events.send_raw(key, value)
                self._events.flush()
                return
            if self._log is None:
                path = self.settings.event_log_path()
                exists = (path / "meta.json").exists()
                self._log = LocalEventLog(path, None if exists else NEW_LOG_PARTITIONS)
            self._log.append(records)

    def close(self) -> None:
        for producer in (self._events, self._decisions):
            if producer is not None:
                producer.close(timeout_s=5)
        if self._log is not None:
            self._log.close()
