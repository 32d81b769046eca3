"""One micro-batch of the stream job: read -> pure transform -> write, then the offsets.

:func:`parse_batch` is pure: raw records -> valid events (deduplicated by ``event_id`` within
the batch, first occurrence kept) and dead letters (bad JSON, schema violations, unknown
types, NaN/Inf, oversize; each with its reason and offset). :class:`StreamProcessor` writes a
parsed batch: the online store (incremental daily partials, one atomic call; it skips
events it has seen and does not apply events beyond the lateness bound), the offline store
(every valid event, Parquet by event date: the history training sets are built from), the
late-event store (which events the online state did not take) and the dead-letter sink, all
idempotent. The caller
commits offsets only after :meth:`StreamProcessor.process` returns: at-least-once delivery
plus idempotent sinks make a crash and replay leave the state of a run without the crash.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from ddso.errors import EventParseError
from ddso.io.sources import Record
from ddso.schemas.events import EventBase, parse_event
from ddso.stores.deadletter import DeadLetter, DeadLetterSink
from ddso.stores.offline import OfflineStore, events_table
from ddso.stores.online import OnlineStore
from ddso.stores.state import updates_from_events


@dataclass
class ParsedBatch:
    events: list[EventBase]
    offsets: list[int]
    payloads: list[str]
    """Each event's JSON as received (valid: it parsed), kept in the offline store."""
    dead: list[DeadLetter]
    duplicates_in_batch: int = 0


def parse_batch(records: list[Record], max_event_bytes: int) -> ParsedBatch:
    """Parse every record with the one event parser; pure."""
    out = ParsedBatch([], [], [], [])
    seen: set[str] = set()
    for r in records:
        try:
            event = parse_event(r.value, max_bytes=max_event_bytes)
        except EventParseError as e:
            out.dead.append(DeadLetter(r.offset, e.reason, e.detail, r.value))
            continue
        if event.event_id in seen:
            out.duplicates_in_batch += 1
            continue
        seen.add(event.event_id)
        out.events.append(event)
        out.offsets.append(r.offset)
        out.payloads.append(r.value.decode())
    return out


@dataclass
class BatchStats:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    late: int = 0
    freshness_ms: list[float] = field(default_factory=list)
    """Producer timestamp -> online store holds it, per record that carries a timestamp."""
    dead_reasons: dict[str, int] = field(default_factory=dict)
    """Dead letters by reason."""
    newest_event_s: float | None = None
    """The newest event time (Unix seconds) of the events the online store took."""

    def add(self, other: BatchStats) -> None:
        self.received += other.received
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.dead_letters += other.dead_letters
        self.late += other.late
        self.freshness_ms.extend(other.freshness_ms)
        for reason, n in other.dead_reasons.items():
            self.dead_reasons[reason] = self.dead_reasons.get(reason, 0) + n
        if self.newest_event_s is None or (other.newest_event_s or 0) > self.newest_event_s:
            self.newest_event_s = other.newest_event_s


class StreamProcessor:
    """Writes parsed micro-batches to the online, offline, late and dead-letter sinks."""

    def __init__(
        self,
        online: OnlineStore,
        offline: OfflineStore,
        late: OfflineStore,
        dead_letters: DeadLetterSink,
        *,
        lateness_s: float,
        max_event_bytes: int,
        clock: Callable[[], float] = time.time,
    ):
        self.online = online
        self.offline = offline
        self.late = late
        self.dead_letters = dead_letters
        self.lateness_s = lateness_s
        self.max_event_bytes = max_event_bytes
        self.clock = clock

    def process(self, source: str, records: list[Record]) -> BatchStats:
        """Apply one partition's records; raises (and writes nothing more) if a sink fails."""
        stats = BatchStats(received=len(records))
        if not records:
            return stats
        parsed = parse_batch(records, self.max_event_bytes)
        now = datetime.fromtimestamp(self.clock(), UTC)
        first, last = records[0].offset, records[-1].offset
        result = self.online.apply(updates_from_events(parsed.events), self.lateness_s)
        applied_at = self.clock()
        # The offline file of a batch depends on its records only, never on the online state,
        # so a replayed batch rewrites exactly the same rows.
        table = events_table(parsed.events, parsed.offsets, source, now, parsed.payloads)
        self.offline.write_batch(table, source, first, last)
        taken = table
        if result.late:
            late_ids = pa.array(result.late)
            is_late = pc.is_in(table["event_id"], late_ids)
            self.late.write_batch(table.filter(is_late), source, first, last)
            taken = table.filter(pc.invert(is_late))
        self.dead_letters.write(source, parsed.dead, now)
        stats.applied = result.applied
        stats.duplicates = result.duplicates + parsed.duplicates_in_batch
        stats.dead_letters = len(parsed.dead)
        stats.late = len(result.late)
        stats.dead_reasons = dict(Counter(d.reason for d in parsed.dead))
        newest = pc.max(taken["event_time"]).as_py()
        stats.newest_event_s = newest.timestamp() if newest is not None else None
        stats.freshness_ms = [
            applied_at * 1000 - r.timestamp_ms for r in records if r.timestamp_ms is not None
        ]
        return stats
