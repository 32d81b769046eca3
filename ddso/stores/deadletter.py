"""The dead-letter sink: records the stream could not parse, with the reason.

Each micro-batch's rejects go to one Parquet file named by its source partition and offset
range, so a replayed batch overwrites its own file; a batch redelivered with other bounds
may write a record again, so :meth:`DeadLetterSink.read` keeps one row per (source, offset):
a poison message is in the sink exactly once however often it is redelivered.

Payloads are redacted before they are written: a dead letter keeps the shape of the message
(keys, value types and lengths) and a short hash, never its values, which may be contact data.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Keys whose values say what a message is without saying who it is about.
_SAFE_KEYS = frozenset({"type", "event_id", "event_time", "source"})

DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("offset", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("payload_redacted", pa.string()),
        ("payload_bytes", pa.int64()),
        ("payload_sha256", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    reason: str
    detail: str
    payload: bytes


def _shape(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: (v if k in _SAFE_KEYS and isinstance(v, str) else _shape(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shape(v) for v in value[:3]] + (["..."] if len(value) > 3 else [])
    if isinstance(value, str):
        return f"<str:{len(value)}>"
    if isinstance(value, bool) or value is None:
        return value
    return f"<{type(value).__name__}>"


def redact(payload: bytes) -> str:
    """The message's structure without its values (see the module docstring)."""
    try:
        return json.dumps(_shape(json.loads(payload)), sort_keys=True)[:4000]
    except (ValueError, UnicodeDecodeError, RecursionError):
        return f"<{len(payload)} bytes, not JSON>"


class DeadLetterSink:
    """Parquet files under ``<root>/dead_letters/``."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / "dead_letters"

    def write(self, source: str, letters: list[DeadLetter], received_at: datetime) -> int:
        if not letters:
            return 0
        table = pa.table(
            {
                "source": [source] * len(letters),
                "offset": [d.offset for d in letters],
                "reason": [d.reason for d in letters],
                "detail": [d.detail for d in letters],
                "payload_redacted": [redact(d.payload) for d in letters],
                "payload_bytes": [len(d.payload) for d in letters],
                "payload_sha256": [hashlib.sha256(d.payload).hexdigest()[:16] for d in letters],
                "received_at": [received_at] * len(letters),
            },
            schema=DEAD_LETTER_SCHEMA,
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source)
        first, last = min(d.offset for d in letters), max(d.offset for d in letters)
        name = f"{safe}-{first:012d}-{last:012d}.parquet"
        tmp = self.dir / f".{name}.{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / name)
        return len(letters)

    def read(self) -> pa.Table:
        """Every dead letter once, ordered by (source, offset)."""
        files = sorted(self.dir.glob("*.parquet")) if self.dir.exists() else []
        if not files:
            return DEAD_LETTER_SCHEMA.empty_table()
        table = pa.concat_tables(pq.read_table(f, schema=DEAD_LETTER_SCHEMA) for f in files)
        frame = (
            table.to_pandas()
            .drop_duplicates(["source", "offset"])
            .sort_values(["source", "offset"])
        )
        return pa.Table.from_pandas(frame, schema=DEAD_LETTER_SCHEMA, preserve_index=False)
