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

:class:`GraphRefresh` keeps the graph features (:mod:`ddso.features.graph`) of the stream: the
processor folds each batch's purchases and views into its :class:`GraphState`, and every
``interval_s`` it recomputes the features of the customers with new purchases or views since
the last refresh and writes them to the online store. PageRank and the walks are global, so
they cannot follow each event; a customer not touched keeps the values of its last refresh
even when other customers' baskets have moved the graph since (the known limit).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from ddso.errors import EventParseError, ServiceError
from ddso.features.graph import KINDS, GraphState
from ddso.io.sources import Record
from ddso.schemas.events import EventBase, parse_event
from ddso.stores.deadletter import DeadLetter, DeadLetterSink
from ddso.stores.offline import OfflineStore, events_table
from ddso.stores.online import OnlineStore
from ddso.stores.state import updates_from_events

log = logging.getLogger(__name__)

GRAPH_EVENT_COLUMNS = ["event_id", "customer_id", "type", "event_time", "lines", "payload"]
"""The offline-store columns :func:`ddso.features.graph.interactions` reads."""


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
        graph: GraphRefresh | None = None,
    ):
        self.online = online
        self.offline = offline
        self.late = late
        self.dead_letters = dead_letters
        self.lateness_s = lateness_s
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self.graph = graph

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
        if self.graph is not None:
            # After the offline write: what the graph holds, a restart can read back.
            self.graph.update(table)
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


class GraphRefresh:
    """The stream's graph features: folded per micro-batch, written every ``interval_s``.

    :meth:`update` folds a batch's purchases and views into the :class:`GraphState` (sets of
    baskets: any order, any redelivery, the same state) and remembers their customers;
    :meth:`maybe_refresh` recomputes those customers' graph features over the whole graph,
    as :func:`ddso.features.graph.graph_features` does over the same events, and writes them
    with :meth:`OnlineStore.put_features`. If the write fails the customers stay pending and
    the next refresh writes them. A refresh runs in the consumer's loop: the consumer polls
    nothing while it runs (tenths of a second for hundreds of customers).

    The state lives in memory. :meth:`from_offline` rebuilds it at start from the offline
    store, which holds every event the stream has accepted (the processor folds a batch only
    after writing it there), and marks every customer pending, so the first refresh rewrites
    the whole online graph state.

    With several consumers each keeps its own state: the whole history at its start, then
    only the partitions it owns. Its customers' features then miss the other consumers'
    baskets since that start, until it restarts; exact with one consumer.
    """

    def __init__(
        self,
        online: OnlineStore,
        interval_s: float,
        state: GraphState | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.online = online
        self.interval_s = interval_s
        self.state = state if state is not None else GraphState()
        self.clock = clock
        self.pending: set[str] = set()
        self._last = clock()

    @classmethod
    def from_offline(
        cls,
        online: OnlineStore,
        offline: OfflineStore,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> GraphRefresh:
        """A refresher whose state holds every purchase and view of the offline store."""
        refresh = cls(online, interval_s, clock=clock)
        refresh.update(offline.read(GRAPH_EVENT_COLUMNS, types=list(KINDS.values())))
        if refresh.pending:
            refresh._last = float("-inf")  # due at once: the online store may hold nothing yet
        return refresh

    def update(self, events: pa.Table) -> None:
        """Fold one batch (offline-store columns) and mark its customers pending."""
        self.pending |= self.state.update(events)

    def due(self) -> bool:
        return bool(self.pending) and self.clock() - self._last >= self.interval_s

    def maybe_refresh(self) -> int:
        """Refresh if due; returns the customers written (0 if not due or the write failed)."""
        return self.refresh() if self.due() else 0

    def refresh(self) -> int:
        """Recompute and write the pending customers' graph features now."""
        pending = self.pending
        self.pending = set()
        self._last = self.clock()
        if not pending:
            return 0
        rows = self.state.customer_features(pending)
        try:
            return self.online.put_features(rows)
        except ServiceError as e:
            self.pending |= pending
            log.warning("graph features of %d customers not written, retrying: %s", len(rows), e)
            return 0
