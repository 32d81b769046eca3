"""Online feature stores: the incremental per-customer state the stream job writes.

Two implementations of one contract (:class:`OnlineStore`, rules in :mod:`ddso.stores.state`):
:class:`InMemoryOnlineStore` for the embedded default and unit tests, and
:class:`ddso.stores.redis_online.RedisOnlineStore` for production. The conformance suite runs
the same scenarios against both.

:class:`SnapshotStore` is the read-only store of a serving replica on the embedded default:
customer id -> feature row, loaded from an offline-store snapshot (Parquet).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ddso.errors import DataFileError, ServiceError
from ddso.features import behaviour
from ddso.features.behaviour import DAY_S, MAX_WINDOW_DAYS
from ddso.stores.state import ApplyResult, CustomerState, Update, timestamps_of


class OnlineStore(Protocol):
    """Per customer: the incremental event state, and feature values computed elsewhere.

    ``apply``/``state`` hold the behavioural state the stream folds event by event.
    ``put_features``/``get_features`` hold features that need more than one customer's
    events (the graph features, :mod:`ddso.features.graph`): the stream job computes them
    and writes the values; a write replaces the named values and keeps the others.
    """

    def apply(self, updates: list[Update], lateness_s: float) -> ApplyResult: ...

    def state(self, customer_id: str) -> CustomerState | None: ...

    def put_features(self, rows: pd.DataFrame) -> int: ...

    def get_features(self, customer_id: str) -> dict[str, float] | None: ...


def feature_values(rows: pd.DataFrame) -> Iterator[tuple[str, dict[str, float]]]:
    """(customer id, {feature: value}) per row of a ``customer_id`` + numeric columns frame."""
    names = [c for c in rows.columns if c != "customer_id"]
    values = rows[names].to_numpy(dtype=np.float64)
    for cid, row in zip(rows["customer_id"].astype(str), values.tolist(), strict=True):
        yield cid, dict(zip(names, row, strict=True))


def _order_key(update: Update) -> tuple[float, str]:
    return (update.time_s, update.event_id)


class InMemoryOnlineStore:
    """The online store in this process's memory, with exactly the Redis store's rules."""

    def __init__(self) -> None:
        self._states: dict[str, CustomerState] = {}
        self._seen: dict[str, dict[str, float]] = {}
        self._last_keys: dict[str, dict[str, tuple[float, str]]] = {}
        self._features: dict[str, dict[str, float]] = {}

    def apply(self, updates: list[Update], lateness_s: float) -> ApplyResult:
        result = ApplyResult()
        touched: set[str] = set()
        for u in updates:
            st = self._states.get(u.customer_id)
            seen = self._seen.setdefault(u.customer_id, {})
            if st is not None and u.time_s < st.last_event_s - lateness_s:
                result.late.append(u.event_id)
                continue
            if u.event_id in seen:
                result.duplicates += 1
                continue
            if st is None:
                st = self._states[u.customer_id] = CustomerState(daily={}, first_event_s=u.time_s)
            seen[u.event_id] = u.time_s
            if u.sums:  # like Redis, a day exists only once something was summed on it
                day = st.daily.setdefault(u.day, {})
                for metric, value in u.sums.items():
                    day[metric] = day.get(metric, 0.0) + value
            for name, t in timestamps_of(u).items():
                current = getattr(st, name)
                better = min if name == "first_event_s" else max
                setattr(st, name, better(current, t) if current else t)
            keys = self._last_keys.setdefault(u.customer_id, {})
            for name, value in u.last_values.items():
                if name not in keys or _order_key(u) > keys[name]:
                    keys[name] = _order_key(u)
                    st.last_values[name] = value
            result.applied += 1
            touched.add(u.customer_id)
        for cid in touched:
            self._prune(cid, lateness_s)
        return result

    def _prune(self, customer_id: str, lateness_s: float) -> None:
        st = self._states[customer_id]
        horizon = st.last_event_s - lateness_s
        seen = self._seen[customer_id]
        for eid in [e for e, t in seen.items() if t < horizon]:
            del seen[eid]
        oldest = int(st.last_event_s // DAY_S) - MAX_WINDOW_DAYS
        for d in [d for d in st.daily if d < oldest]:
            del st.daily[d]

    def state(self, customer_id: str) -> CustomerState | None:
        return self._states.get(customer_id)

    def customers(self) -> list[str]:
        return sorted(self._states)

    def put_features(self, rows: pd.DataFrame) -> int:
        n = 0
        for cid, values in feature_values(rows):
            self._features.setdefault(cid, {}).update(values)
            n += 1
        return n

    def get_features(self, customer_id: str) -> dict[str, float] | None:
        values = self._features.get(customer_id)
        return dict(values) if values is not None else None


class SnapshotStore:
    """Customer id -> feature row, held in a dict (read-only, one per serving replica)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()):
        self._rows: dict[str, dict[str, Any]] = {str(r["customer_id"]): dict(r) for r in rows}

    @classmethod
    def from_parquet(cls, path: str | Path) -> SnapshotStore:
        """Load a feature snapshot file, or the newest ``features_*.parquet`` in a folder."""
        path = latest_snapshot(path)
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as e:
            raise DataFileError(f"{path}: cannot read the feature snapshot ({e})") from None
        if "customer_id" not in table.column_names:
            raise DataFileError(f"{path}: the feature snapshot has no 'customer_id' column")
        return cls(table.to_pylist())

    def get(self, customer_id: str) -> Mapping[str, Any] | None:
        return self._rows.get(customer_id)

    def __len__(self) -> int:
        return len(self._rows)


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


class LiveFeatures:
    """The serving lookup: a snapshot row overlaid with live behaviour from the online store.

    The snapshot (written by ``pipelines.featurize``) holds what changes slowly: the
    financial features, consent, preferred channel, birth year. The online store (Redis in
    production, fed by the stream job) holds each customer's behavioural state, turned into
    features at request time, so they are seconds fresh. When the online store fails the
    snapshot's values are served and the answer says ``degraded``; a customer the online
    store has never seen keeps the snapshot's values; one without a snapshot row (no profile
    or consent on record) is unknown, as on the snapshot alone.
    """

    def __init__(self, snapshot: SnapshotStore, live: OnlineStore | None = None,
                 clock: Callable[[], float] = time.time):
        self.snapshot = snapshot
        self.live = live
        self.clock = clock

    def get(self, customer_id: str) -> tuple[Mapping[str, Any] | None, bool]:
        """(the customer's row or None, degraded: the online store could not be read)."""
        row = self.snapshot.get(customer_id)
        if self.live is None or row is None:
            return row, False
        try:
            state = self.live.state(customer_id)
        except ServiceError:
            return row, True
        if state is None:
            return row, False
        fresh = state.features(customer_id, datetime.fromtimestamp(self.clock(), UTC))
        merged = dict(row)
        merged.update({k: fresh[k] for k in behaviour.FEATURE_COLUMNS})
        return merged, False

    def __len__(self) -> int:
        return len(self.snapshot)
