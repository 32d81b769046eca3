"""Where the stream job reads from: Kafka (a consumer group) or the embedded local log.

Both give the same thing: :meth:`Source.poll` returns records grouped by stream partition
(named ``<topic>-<n>``), and :meth:`Source.commit` records the next offset to read per
partition, only after the sinks hold the batch. Kafka assigns partitions through its group
coordinator; on the local log a consumer owns the partitions ``p`` with
``p % consumers == index``, which is the same one-owner-per-partition rule without a broker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from ddso.config import Settings
from ddso.io.eventlog import LocalEventLog
from ddso.io.kafka import TopicPartition, commit_offsets, make_consumer


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None
    """When the producer created it (Kafka's record timestamp); None on the local log."""


class Source(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> dict[str, list[Record]]: ...

    def commit(self, offsets: dict[str, int]) -> None: ...

    def close(self) -> None: ...


class KafkaSource:
    """A member of the stream's consumer group on the events topic."""

    def __init__(self, settings: Settings, group_id: str | None = None):
        k = settings.kafka
        self.topic = k.events_topic
        self.consumer = make_consumer(k, group_id or k.group_id, [k.events_topic])
        self._partitions: dict[str, TopicPartition] = {}

    def poll(self, max_records: int, timeout_s: float) -> dict[str, list[Record]]:
        raw = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out: dict[str, list[Record]] = {}
        for tp, records in raw.items():
            name = f"{tp.topic}-{tp.partition}"
            self._partitions[name] = tp
            out[name] = [Record(r.offset, r.key, r.value, r.timestamp) for r in records]
        return out

    def commit(self, offsets: dict[str, int]) -> None:
        commit_offsets(self.consumer, {self._partitions[p]: off for p, off in offsets.items()})

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class LocalLogSource:
    """Reads the local event log's partitions that this consumer owns, as a group member."""

    def __init__(
        self, settings: Settings, group_id: str | None = None, index: int = 0, consumers: int = 1
    ):
        self.log = LocalEventLog(settings.event_log_path(), readonly=True)
        self.group = group_id or settings.kafka.group_id
        self.topic = settings.kafka.events_topic
        self.owned = [p for p in range(self.log.partitions) if p % consumers == index]
        committed = self.log.committed(self.group)
        self.position = {p: committed.get(p, 0) for p in self.owned}

    def poll(self, max_records: int, timeout_s: float) -> dict[str, list[Record]]:
        deadline = time.monotonic() + timeout_s
        while True:
            out: dict[str, list[Record]] = {}
            budget = max_records
            for p in self.owned:
                if budget <= 0:
                    break
                got = self.log.read(p, self.position[p], budget)
                if got:
                    out[f"{self.topic}-{p}"] = [Record(o, k, v) for o, k, v in got]
                    self.position[p] = got[-1][0] + 1
                    budget -= len(got)
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def commit(self, offsets: dict[str, int]) -> None:
        self.log.commit(self.group, {int(p.rsplit("-", 1)[1]): off for p, off in offsets.items()})

    def close(self) -> None:
        self.log.close()


def make_source(settings: Settings, index: int = 0, consumers: int = 1) -> Source:
    """Kafka when bootstrap servers are configured, else the embedded local log."""
    if settings.kafka.bootstrap_servers:
        return KafkaSource(settings)
    return LocalLogSource(settings, index=index, consumers=consumers)
