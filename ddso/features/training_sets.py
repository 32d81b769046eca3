"""Point-in-time training sets: customer features exactly as they were at each spine row's time.

A *spine* is a DataFrame of ``customer_id`` and ``timestamp`` (tz-aware) rows, e.g. decision
times with their labels. :func:`point_in_time` returns the spine with one column per feature,
each computed only from events at or before that row's ``timestamp`` (same second included),
and the financial features from the latest profile whose ``as_of`` is at or before it.

The behavioural features run the definitions of :mod:`ddso.features.behaviour` without
recomputing history per row. Windows are UTC calendar days, so a request ``(customer, T)``
on day ``D`` is the merge of two kinds of partial rows:

* the customer's daily partials of days before ``D``, computed once for the whole spine;
* one running total of the customer's events of day ``D`` up to ``T``, looked up by an
  as-of join on a per-customer, per-day cumulative sum (so the same-day cut is exact).

Both go through :func:`behaviour.window_rows` and :func:`behaviour.aggregate` once per
distinct spine day, then through :func:`behaviour.finalize` once for the whole spine, with
each row's own as-of time.

Cost, with E events of the spine's customers up to the last timestamp, R distinct
(customer, timestamp) requests, h the average number of earlier active days of a requested
customer and D distinct spine days: O(E log E) to read, partial and sort the events once,
O(R log E) for the same-day as-of joins, O(R * h) window rows, and D window/aggregate calls
of fixed pandas overhead; the number of distinct timestamps costs nothing extra. Memory is
O(E + R) plus the window rows of one spine day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ddso.errors import UserError
from ddso.features import behaviour, financial
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from ddso.stores.offline import OfflineStore

SPINE_COLUMNS: tuple[str, str] = ("customer_id", "timestamp")
"""Columns every spine must have; any other column is passed through unchanged."""
# Only what the behaviour functions read: the offline table has many more columns.
_EVENT_COLUMNS = ["customer_id", "type", "event_time", "lines"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = behaviour.DAY_S * 1_000_000
_US = pa.timestamp("us", tz="UTC")
# Packs (customer code, day since 1970) into one sortable int64; days stay below 2**21.
_DAY_BITS = 21


def _utc(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _check_features(features: Sequence[str] | None) -> list[str]:
    if features is None:
        return list(CUSTOMER_FEATURES)
    names = list(features)
    unknown = [n for n in names if n not in CUSTOMER_FEATURES]
    if unknown:
        raise UserError(
            f"unknown feature(s) {unknown}: features must be among the customer feature set; "
            f"valid names: {', '.join(CUSTOMER_FEATURES)}"
        )
    return names


def _spine_micros(spine: pd.DataFrame, wanted: list[str]) -> np.ndarray:
    """Validate the spine; its timestamps as UTC epoch microseconds (floored)."""
    if not isinstance(spine, pd.DataFrame):
        raise UserError(f"spine must be a pandas DataFrame, got {type(spine).__name__}")
    missing = [c for c in SPINE_COLUMNS if c not in spine.columns]
    if missing:
        raise UserError(f"spine is missing column(s) {missing}; it needs {list(SPINE_COLUMNS)}")
    clash = [c for c in wanted if c in spine.columns]
    if clash:
        raise UserError(f"spine column(s) {clash} clash with feature names; rename or drop them")
    if spine["customer_id"].isna().any():
        raise UserError("spine column 'customer_id' has nulls: every row needs a customer id")
    ts = spine["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        try:
            ts = pd.to_datetime(ts)
        except (TypeError, ValueError) as err:
            raise UserError(f"spine column 'timestamp' must hold datetimes: {err}") from None
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise UserError(
            "spine column 'timestamp' must be timezone-aware (UTC); got naive values: "
            "use pd.to_datetime(..., utc=True) or .dt.tz_localize('UTC')"
        )
    if ts.isna().any():
        rows = np.flatnonzero(ts.isna().to_numpy())[:5].tolist()
        raise UserError(f"spine column 'timestamp' has NaT at row position(s) {rows}: drop them")
    # The store keeps microseconds: an event at or before T is at or before T floored to them.
    naive_utc = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return naive_utc.astype("datetime64[us]").view(np.int64)


def _same_day_totals(
    parts: pd.DataFrame, event_us: np.ndarray, reqs: pd.DataFrame
) -> tuple[np.ndarray, pd.DataFrame]:
    """For each request, the merged partial row of its customer's events that day up to T.

    Returns (request ids that have such events, their partial rows).
    """
    order = np.lexsort((event_us, parts["customer_id"].to_numpy()))
    p = parts.iloc[order].reset_index(drop=True)
    g = p.groupby(["customer_id", "day"], sort=False)
    cum = pd.concat(
        [
            p["day"],
            g[list(behaviour.SUM_METRICS)].cumsum(),
            g[list(behaviour.MAX_METRICS)].cummax(),
            g[list(behaviour.MIN_METRICS)].cummin(),
        ],
        axis=1,
    )
    right = pd.DataFrame({"t": event_us[order], "code": p["customer_id"], "row": np.arange(len(p))})
    # Stable by time keeps equal-time events in cumulative order; merge_asof takes the last.
    right = right.iloc[np.argsort(right["t"].to_numpy(), kind="stable")]
    left = reqs[["t", "code", "day"]].assign(req=np.arange(len(reqs))).sort_values("t")
    hit = pd.merge_asof(left, right, on="t", by="code", direction="backward")
    hit = hit[hit["row"].notna()]
    rows = hit["row"].to_numpy(dtype=np.int64)
    same_day = cum["day"].to_numpy()[rows] == hit["day"].to_numpy()
    return hit["req"].to_numpy()[same_day], cum.iloc[rows[same_day]]


def _behaviour_at(reqs: pd.DataFrame, customers: pd.Index, store: OfflineStore) -> pd.DataFrame:
    """Behavioural features per request (index: request id; missing: no events up to T)."""
    events = store.read(
        columns=_EVENT_COLUMNS, until=_utc(reqs["t"].max()), customer_ids=list(customers)
    )
    parts = behaviour.contributions(events)
    event_us = pc.cast(pc.cast(events["event_time"], _US), pa.int64()).to_numpy()
    # Integer customer codes from here on: they pack into sort keys and index arrays.
    parts["customer_id"] = customers.get_indexer(parts["customer_id"])
    daily = behaviour.merge_partials(parts)
    key = (daily["customer_id"].to_numpy() << _DAY_BITS) + daily["day"].to_numpy()
    order = np.argsort(key, kind="stable")
    daily, key = daily.iloc[order].reset_index(drop=True), key[order]
    hit_req, today = _same_day_totals(parts, event_us, reqs)
    today = today.assign(customer_id=hit_req)
    today_of = pd.Series(np.arange(len(hit_req)), index=hit_req)

    aggs = [pd.DataFrame(columns=["customer_id"], dtype=np.int64)]
    for day, group in reqs.groupby("day", sort=True):
        req_ids = group.index.to_numpy()
        code = group["code"].to_numpy()
        # Rows of a customer's days before `day` are one contiguous range of the packed key.
        lo = np.searchsorted(key, code << _DAY_BITS)
        hi = np.searchsorted(key, (code << _DAY_BITS) + day)
        counts = hi - lo
        starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
        rows = starts + np.arange(counts.sum())
        # The request id stands in for customer_id so aggregate() merges per (customer, T).
        prior = daily.iloc[rows].assign(customer_id=np.repeat(req_ids, counts))
        same = today.iloc[today_of.reindex(req_ids).dropna().to_numpy(dtype=np.int64)]
        window = behaviour.window_rows(pd.concat([prior, same]), _utc(day * _DAY_US))
        aggs.append(behaviour.aggregate(window))
    agg = pd.concat(aggs, ignore_index=True)
    return _finalize_each(agg, reqs["t"].to_numpy()[agg["customer_id"].to_numpy()])


def _finalize_each(agg: pd.DataFrame, t_us: np.ndarray) -> pd.DataFrame:
    """finalize() with each row's own as_of, in one call."""
    cols = list(behaviour.FEATURE_COLUMNS)
    if agg.empty:
        return pd.DataFrame(columns=cols, dtype=float)
    return behaviour.finalize(agg, t_us / 1e6).set_index("customer_id")[cols]


def _financial_at(
    reqs: pd.DataFrame, customers: pd.Index, profiles: pa.Table | pd.DataFrame
) -> pd.DataFrame:
    """Financial features per request from the latest profile with ``as_of <= T``."""
    table = (
        profiles
        if isinstance(profiles, pa.Table)
        else pa.Table.from_pandas(profiles, preserve_index=False)
    )
    for name in ("customer_id", "as_of"):
        if name not in table.column_names:
            raise UserError(f"profiles are missing column '{name}': pass FinancialProfile rows")
    as_of = table["as_of"]
    if not pa.types.is_timestamp(as_of.type) or as_of.type.tz is None:
        raise UserError(
            f"profiles column 'as_of' must be a timezone-aware (UTC) timestamp, got {as_of.type}"
        )
    if as_of.null_count:
        raise UserError("profiles column 'as_of' has nulls: every profile needs its as_of time")
    feats = financial.financial_features(table)
    right = feats.drop(columns="customer_id").assign(
        t=pc.cast(pc.cast(as_of, _US), pa.int64()).to_numpy(),
        code=customers.get_indexer(feats["customer_id"]),
        matched=True,
    )
    # Stable by time: of two profiles with the same as_of, the later row wins.
    right = right[right["code"] >= 0]
    right = right.iloc[np.argsort(right["t"].to_numpy(), kind="stable")]
    left = reqs[["t", "code"]].assign(req=np.arange(len(reqs))).sort_values("t")
    hit = pd.merge_asof(left, right, on="t", by="code", direction="backward")
    hit = hit[hit["matched"].notna()]
    return hit.set_index("req")[list(financial.FEATURE_COLUMNS)]


def point_in_time(
    spine: pd.DataFrame,
    offline_store: OfflineStore,
    features: Sequence[str] | None = None,
    profiles: pa.Table | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The spine with each feature as it was at its row's ``timestamp``.

    ``features`` defaults to every name of :data:`CUSTOMER_FEATURES`. Behavioural features
    come from ``offline_store`` events at or before the row's time; financial ones from
    ``profiles`` (flattened FinancialProfile rows with ``as_of``), the latest at or before
    it. A customer with neither gets :func:`cold_start_features` values. Rows, their order,
    index and extra columns are kept; feature columns are appended as float64.
    """
    wanted = _check_features(features)
    t_us = _spine_micros(spine, wanted)
    customers = pd.Index(pd.unique(spine["customer_id"].to_numpy()))
    keys = pd.DataFrame({"code": customers.get_indexer(spine["customer_id"]), "t": t_us})
    # Repeated (customer, T) rows are computed once.
    req_of_row = keys.groupby(["code", "t"], sort=False).ngroup().to_numpy()
    reqs = keys.drop_duplicates().reset_index(drop=True)
    reqs["day"] = reqs["t"] // _DAY_US

    cold = cold_start_features()
    values = pd.DataFrame({n: np.full(len(reqs), cold[n]) for n in wanted})
    parts = []
    if any(n in behaviour.FEATURE_COLUMNS for n in wanted) and len(reqs):
        parts.append(_behaviour_at(reqs, customers, offline_store))
    if any(n in financial.FEATURE_COLUMNS for n in wanted) and profiles is not None:
        parts.append(_financial_at(reqs, customers, profiles))
    for found in parts:
        cols = [n for n in wanted if n in found.columns]
        values.loc[found.index, cols] = found[cols].to_numpy(dtype=float)
    return spine.assign(**{n: values[n].to_numpy()[req_of_row] for n in wanted})
