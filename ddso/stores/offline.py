"""The offline store: every accepted event, as Parquet partitioned by event date.

Layout under ``<root>/events/``::

    event_date=YYYY-MM-DD/part-<source>-<first offset>-<last offset>.parquet

Columns (:data:`OFFLINE_SCHEMA`): ``event_id``, ``customer_id``, ``type``, ``event_time``
(when it happened), ``ingestion_time`` (when the stream accepted it), ``lines`` (purchase
lines; null for other types), ``payload`` (the event's canonical JSON, so any field can be
recovered) and where it came from (``source``, ``source_offset``).

Writes are idempotent: a micro-batch's file name is derived from its source and offset
range, so a batch replayed after a crash overwrites its own file with the same rows (written
to a temp name, then renamed). The feature functions read this table directly: it has the
``customer_id``, ``type``, ``event_time`` and ``lines`` columns they need.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ddso.schemas.events import EventBase, Purchase, encode_event

LINE_TYPE = pa.struct(
    [
        ("product_id", pa.string()),
        ("quantity", pa.int64()),
        ("unit_price", pa.float64()),
        ("discount", pa.float64()),
    ]
)
TIMESTAMP = pa.timestamp("us", tz="UTC")
OFFLINE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("type", pa.string()),
        ("event_time", TIMESTAMP),
        ("ingestion_time", TIMESTAMP),
        ("lines", pa.list_(LINE_TYPE)),
        ("payload", pa.string()),
        ("source", pa.string()),
        ("source_offset", pa.int64()),
    ]
)


def events_table(
    events: Sequence[EventBase],
    offsets: Sequence[int],
    source: str,
    ingestion_time: datetime,
    payloads: Sequence[str] | None = None,
) -> pa.Table:
    """Validated events (with their source offsets) as rows of the offline schema.

    ``payloads`` are the events' JSON as received; without them each event is re-encoded.
    """
    lines = [
        [ln.model_dump() for ln in e.lines] if isinstance(e, Purchase) else None for e in events
    ]
    return pa.table(
        {
            "event_id": [e.event_id for e in events],
            "customer_id": [e.customer_id for e in events],
            "type": [e.type for e in events],  # type: ignore[attr-defined]
            "event_time": [e.event_time for e in events],
            "ingestion_time": [ingestion_time] * len(events),
            "lines": lines,
            "payload": list(payloads)
            if payloads is not None
            else [encode_event(e).decode() for e in events],
            "source": [source] * len(events),
            "source_offset": list(offsets),
        },
        schema=OFFLINE_SCHEMA,
    )


class OfflineStore:
    """Parquet event store rooted at a local folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.events_dir = self.root / "events"

    def write_batch(self, table: pa.Table, source: str, first_offset: int, last_offset: int) -> int:
        """Write one micro-batch, split by event date; returns the rows written.

        ``source`` names the stream partition (e.g. ``ddso.events-3``); together with the offset
        range it names the files, which makes a replayed batch overwrite itself.
        """
        if table.num_rows == 0:
            return 0
        safe_source = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source)
        dates = pc.strftime(table["event_time"], format="%Y-%m-%d")
        for date in pc.unique(dates).to_pylist():
            part = table.filter(pc.equal(dates, date))
            folder = self.events_dir / f"event_date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{safe_source}-{first_offset:012d}-{last_offset:012d}.parquet"
            tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
            pq.write_table(part, tmp)
            os.replace(tmp, folder / name)
        return table.num_rows

    def dataset(self) -> pads.Dataset:
        """The whole store as a pyarrow dataset (``event_date`` as a partition column)."""
        return pads.dataset(
            self.events_dir, format="parquet", partitioning="hive", exclude_invalid_files=True
        )

    def read(
        self,
        columns: Sequence[str] | None = None,
        until: datetime | None = None,
        customer_ids: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> pa.Table:
        """Events (optionally only those at or before ``until``, of some customers or types).

        A replayed batch can leave the same event in two files only if its offsets changed,
        which Kafka never does; rows are still deduplicated by ``event_id`` here so that a
        reader never double counts.
        """
        if not self.events_dir.exists():
            return OFFLINE_SCHEMA.empty_table().select(list(columns or OFFLINE_SCHEMA.names))
        flt = None
        if until is not None:
            flt = pc.field("event_time") <= pa.scalar(until, TIMESTAMP)
        if customer_ids is not None:
            c = pc.field("customer_id").isin(list(customer_ids))
            flt = c if flt is None else flt & c
        if types is not None:
            k = pc.field("type").isin(list(types))
            flt = k if flt is None else flt & k
        wanted = list(columns or OFFLINE_SCHEMA.names)
        read_cols = wanted if "event_id" in wanted else [*wanted, "event_id"]
        table = self.dataset().to_table(columns=read_cols, filter=flt)
        table = _drop_duplicate_ids(table)
        return table.select(wanted)


def _drop_duplicate_ids(table: pa.Table) -> pa.Table:
    if table.num_rows == 0:
        return table
    ids = table["event_id"]
    if pc.count_distinct(ids).as_py() == table.num_rows:
        return table
    first = (
        table.append_column("_i", pa.array(range(table.num_rows)))
        .group_by("event_id")
        .aggregate([("_i", "min")])
    )
    return table.take(pc.sort_indices(first["_i_min"]))
