"""The online feature store of the embedded default: in-process, loaded from a snapshot.

Serving reads one customer's features by id. On the embedded default the store lives inside
the serving replica and is filled from the offline store's latest feature snapshot (Parquet);
in production the same interface is backed by Redis (see :mod:`ddso.io.redis`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from ddso.errors import DataFileError


def latest_snapshot(path: str | Path) -> Path:
    """``path`` itself if it is a file; else the newest feature snapshot inside the folder.

    Snapshot names end in their as-of time (``features_v1_20250630T000000Z.parquet``), so the
    lexically last one is the newest.
    """
    path = Path(path)
    if path.is_dir():
        snapshots = sorted(path.glob("features_*.parquet"))
        if not snapshots:
            raise DataFileError(f"{path}: no features_*.parquet snapshot; run pipelines.featurize")
        return snapshots[-1]
    return path


class OnlineStore(Protocol):
    def get(self, customer_id: str) -> Mapping[str, Any] | None: ...


class InMemoryOnlineStore:
    """Customer id -> feature row, held in a dict (read-mostly, one per replica)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()):
        self._rows: dict[str, dict[str, Any]] = {}
        self.put_many(rows)

    @classmethod
    def from_parquet(cls, path: str | Path) -> InMemoryOnlineStore:
        """Load a feature snapshot file, or the newest ``features_*.parquet`` in a folder."""
        path = latest_snapshot(path)
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as e:
            raise DataFileError(f"{path}: cannot read the feature snapshot ({e})") from None
        if "customer_id" not in table.column_names:
            raise DataFileError(f"{path}: the feature snapshot has no 'customer_id' column")
        return cls(table.to_pylist())

    def put_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._rows[str(row["customer_id"])] = dict(row)

    def get(self, customer_id: str) -> Mapping[str, Any] | None:
        return self._rows.get(customer_id)

    def __len__(self) -> int:
        return len(self._rows)
