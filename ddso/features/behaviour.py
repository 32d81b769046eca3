"""Behavioural, RFM and CRM features of a customer, as pure functions on batches.

Windows are UTC calendar days: "in the last 30 days" as of ``T`` means the 30 days ending
with ``T``'s day, today included. That makes every feature a function of per-customer,
per-day partial sums, which is what lets the same definitions run everywhere:

1. :func:`contributions` turns raw events into *partial rows* (schema :data:`PARTIAL_COLUMNS`:
   ``customer_id``, ``day`` and one count, amount or timestamp column per metric), one per
   event. A partial row of one event and the sum of many events of one customer-day have the
   same shape, and partial rows merge associatively (:func:`merge_partials`: sums for
   :data:`SUM_METRICS`, max/min for the timestamps). The streaming job keeps exactly these
   per-day partials as its incremental state in the online store.
2. :func:`window_rows` turns partial rows into window sums as of ``T`` (one row in, one row
   out), dropping days after ``T``; :func:`aggregate` merges them per customer.
3. :func:`finalize` turns the per-customer window sums into features.

Batch (Ray Data, pandas, Spark) runs 1 -> 2 -> aggregate -> 3 over the event history; the
online path runs 2 -> aggregate -> 3 over one customer's stored daily partials. A point-in-
time read passes ``until=T`` to :func:`contributions` so that no event after ``T`` counts,
the same second included only if at or before ``T``.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DAY_S = 86_400
NEVER_DAYS = 3650.0
"""Value of a ``days_since_*`` feature when the thing never happened (ten years)."""
MAX_WINDOW_DAYS = 365
"""The longest window: daily partials older than this never change a feature."""

_CONTACT_TYPES = ("crm_call", "crm_email", "crm_meeting", "offer_shown")
# What the customer did, as opposed to what the seller did to them (contacts, offers shown).
_ACTIVITY_TYPES = (
    "session_start",
    "view",
    "click",
    "cart_add",
    "cart_remove",
    "purchase",
    "offer_accepted",
    "offer_declined",
    "complaint",
    "enrollment",
    "program_payment",
)
# UTC hours of the day parts; customers' own time zones are not known to the stream.
_DAY_PARTS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}

_COUNTED: dict[str, tuple[str, ...]] = {
    "purchases": ("purchase",),
    "views": ("view",),
    "clicks": ("click",),
    "cart_adds": ("cart_add",),
    "cart_removes": ("cart_remove",),
    "sessions": ("session_start",),
    "contacts": _CONTACT_TYPES,
    "complaints": ("complaint",),
    "offers_shown": ("offer_shown",),
    "offers_accepted": ("offer_accepted",),
}
"""Count metric -> the event types it counts."""

SUM_METRICS: tuple[str, ...] = (*_COUNTED, "monetary", "gross", "activity", *_DAY_PARTS, "weekend")
"""Partial columns merged by sum (counts, amounts, the customer's own activity by time)."""
MAX_METRICS: tuple[str, ...] = ("last_event_s", "last_purchase_s", "last_contact_s")
"""Partial columns merged by max: epoch seconds, 0.0 meaning "never"."""
MIN_METRICS: tuple[str, ...] = ("first_event_s",)
"""Partial columns merged by min: epoch seconds."""
PARTIAL_COLUMNS: tuple[str, ...] = ("customer_id", "day", *SUM_METRICS, *MAX_METRICS, *MIN_METRICS)

# window sum column -> (partial metric, window in days)
_WINDOWS: dict[str, tuple[str, int]] = {
    "purchases_30d": ("purchases", 30),
    "purchases_90d": ("purchases", 90),
    "purchases_365d": ("purchases", 365),
    "views_7d": ("views", 7),
    "views_30d": ("views", 30),
    "clicks_7d": ("clicks", 7),
    "clicks_30d": ("clicks", 30),
    "cart_adds_30d": ("cart_adds", 30),
    "cart_removes_30d": ("cart_removes", 30),
    "sessions_30d": ("sessions", 30),
    "sessions_90d": ("sessions", 90),
    "contacts_7d": ("contacts", 7),
    "contacts_30d": ("contacts", 30),
    "complaints_365d": ("complaints", 365),
    "offers_shown_90d": ("offers_shown", 90),
    "offers_accepted_365d": ("offers_accepted", 365),
    "complaints_30d": ("complaints", 30),
    "activity_30d": ("activity", 30),
    "activity_365d": ("activity", 365),
    "night_365d": ("night", 365),
    "morning_365d": ("morning", 365),
    "afternoon_365d": ("afternoon", 365),
    "evening_365d": ("evening", 365),
    "weekend_365d": ("weekend", 365),
    "monetary_30d": ("monetary", 30),
    "monetary_90d": ("monetary", 90),
    "monetary_365d": ("monetary", 365),
    "gross_365d": ("gross", 365),
}
SUM_COLUMNS: tuple[str, ...] = tuple(_WINDOWS)
"""Window sums of :func:`window_rows`, merged by sum in :func:`aggregate`."""
MAX_COLUMNS = MAX_METRICS
MIN_COLUMNS = MIN_METRICS

FEATURE_COLUMNS: tuple[str, ...] = (
    "recency_days",
    "frequency_30d",
    "frequency_90d",
    "frequency_365d",
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "avg_order_value_365d",
    "views_7d",
    "views_30d",
    "clicks_7d",
    "clicks_30d",
    "cart_adds_30d",
    "cart_abandonment_30d",
    "sessions_30d",
    "sessions_90d",
    "discount_share_365d",
    "contacts_7d",
    "contacts_30d",
    "complaints_365d",
    "open_complaint",
    "offers_shown_90d",
    "offers_accepted_365d",
    "days_since_last_event",
    "days_since_last_contact",
    "tenure_days",
    "share_night_365d",
    "share_morning_365d",
    "share_afternoon_365d",
    "share_evening_365d",
    "weekend_share_365d",
    "seasonality_index_30d",
)
"""The behavioural features, in model order."""


def _epoch_seconds(ts: pa.ChunkedArray | pa.Array) -> np.ndarray:
    micros = pc.cast(pc.cast(ts, pa.timestamp("us", tz="UTC")), pa.int64())
    return micros.to_numpy(zero_copy_only=False) / 1e6


def _purchase_amounts(lines: pa.ChunkedArray | pa.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Net and gross amount of each row's purchase lines (0 where there are none)."""
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    net = np.zeros(n)
    gross = np.zeros(n)
    if lines.null_count == n:
        return net, gross
    flat = pc.list_flatten(lines)
    parents = pc.list_parent_indices(lines).to_numpy()
    qty = flat.field("quantity").to_numpy(zero_copy_only=False).astype(float)
    price = flat.field("unit_price").to_numpy(zero_copy_only=False)
    disc = np.nan_to_num(flat.field("discount").to_numpy(zero_copy_only=False).astype(float))
    line_gross = qty * price
    np.add.at(gross, parents, line_gross)
    np.add.at(net, parents, line_gross * (1.0 - disc))
    return net, gross


def contributions(batch: pa.Table | pd.DataFrame, until: datetime | None = None) -> pd.DataFrame:
    """Step 1: one partial row per event (at or before ``until``, if given)."""
    table = (
        batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
    )
    t = _epoch_seconds(table["event_time"])
    if until is not None:
        keep = t <= until.timestamp()
        table = table.filter(pa.array(keep))
        t = t[keep]
    n = table.num_rows
    kind = table["type"].to_numpy(zero_copy_only=False).astype(str)
    out: dict[str, np.ndarray] = {
        "customer_id": table["customer_id"].to_numpy(zero_copy_only=False).astype(object),
        "day": np.floor(t / DAY_S).astype(np.int64),
    }
    for metric, types in _COUNTED.items():
        out[metric] = np.isin(kind, types).astype(np.float64)
    if "lines" in table.column_names:
        out["monetary"], out["gross"] = _purchase_amounts(table["lines"], n)
    else:
        out["monetary"] = out["gross"] = np.zeros(n)
    active = np.isin(kind, _ACTIVITY_TYPES)
    out["activity"] = active.astype(np.float64)
    hour = np.floor(t % DAY_S / 3600)
    for part, (lo, hi) in _DAY_PARTS.items():
        out[part] = (active & (hour >= lo) & (hour < hi)).astype(np.float64)
    weekday = (np.floor(t / DAY_S).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    out["weekend"] = (active & (weekday >= 5)).astype(np.float64)
    # 0.0 means "never": a max over seconds since 1970 ignores it whenever a real time exists.
    out["last_event_s"] = t
    out["last_purchase_s"] = np.where(kind == "purchase", t, 0.0)
    out["last_contact_s"] = np.where(np.isin(kind, _CONTACT_TYPES), t, 0.0)
    out["first_event_s"] = t
    return pd.DataFrame(out)


def merge_partials(partials: pd.DataFrame) -> pd.DataFrame:
    """Merge partial rows per (customer, day): the daily state the stream job stores."""
    grouped = partials.groupby(["customer_id", "day"], sort=True)
    parts = [
        grouped[list(SUM_METRICS)].sum(),
        grouped[list(MAX_METRICS)].max(),
        grouped[list(MIN_METRICS)].min(),
    ]
    return pd.concat(parts, axis=1).reset_index()


def window_rows(partials: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Step 2: partial rows -> window sums as of ``as_of`` (rows of later days dropped)."""
    as_of_day = int(np.floor(as_of.timestamp() / DAY_S))
    p = partials[partials["day"].to_numpy() <= as_of_day]
    age = as_of_day - p["day"].to_numpy()
    out = {"customer_id": p["customer_id"].to_numpy()}
    for column, (metric, days) in _WINDOWS.items():
        out[column] = np.where(age < days, p[metric].to_numpy(dtype=float), 0.0)
    for column in (*MAX_METRICS, *MIN_METRICS):
        out[column] = p[column].to_numpy(dtype=float)
    return pd.DataFrame(out)


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Merge window rows (or partial aggregates of them) per customer."""
    grouped = rows.groupby("customer_id", sort=True)
    parts = [
        grouped[list(SUM_COLUMNS)].sum(),
        grouped[list(MAX_COLUMNS)].max(),
        grouped[list(MIN_COLUMNS)].min(),
    ]
    return pd.concat(parts, axis=1).reset_index()


def _days_since(as_of_s: float | np.ndarray, seconds: pd.Series) -> np.ndarray:
    s = seconds.to_numpy(dtype=float)
    return np.where(s > 0, (as_of_s - s) / DAY_S, NEVER_DAYS)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def finalize(agg: pd.DataFrame, as_of: datetime | np.ndarray) -> pd.DataFrame:
    """Step 3: per-customer window sums -> features (columns: FEATURE_COLUMNS).

    ``as_of`` is one time for every row, or an array of epoch seconds, one per row (a
    point-in-time spine asks each row at its own time; the window sums must then have been
    taken at the same times).
    """
    a = agg
    now = as_of.timestamp() if isinstance(as_of, datetime) else np.asarray(as_of, dtype=float)

    def col(name: str) -> np.ndarray:
        return a[name].to_numpy(dtype=float)

    carts = col("cart_adds_30d")
    out = pd.DataFrame(
        {
            "customer_id": a["customer_id"].to_numpy(),
            "recency_days": _days_since(now, a["last_purchase_s"]),
            "frequency_30d": col("purchases_30d"),
            "frequency_90d": col("purchases_90d"),
            "frequency_365d": col("purchases_365d"),
            "avg_order_value_365d": _ratio(col("monetary_365d"), col("purchases_365d")),
            "cart_abandonment_30d": _ratio(np.clip(carts - col("purchases_30d"), 0, None), carts),
            "discount_share_365d": _ratio(
                col("gross_365d") - col("monetary_365d"), col("gross_365d")
            ),
            "days_since_last_event": _days_since(now, a["last_event_s"]),
            "days_since_last_contact": _days_since(now, a["last_contact_s"]),
            "tenure_days": _days_since(now, a["first_event_s"]),
            # No resolution event exists: a complaint in the last 30 days counts as open.
            "open_complaint": (col("complaints_30d") > 0).astype(np.float64),
            "weekend_share_365d": _ratio(col("weekend_365d"), col("activity_365d")),
            # Last 30 days' activity against the customer's own 30-day average over a year.
            "seasonality_index_30d": _ratio(col("activity_30d"), col("activity_365d") * 30 / 365),
        }
    )
    for part in _DAY_PARTS:
        out[f"share_{part}_365d"] = _ratio(col(f"{part}_365d"), col("activity_365d"))
    for name in FEATURE_COLUMNS:
        if name not in out.columns:
            out[name] = col(name)
    return out[["customer_id", *FEATURE_COLUMNS]]


def event_window_rows(events: pa.Table | pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Steps 1 and 2 on a batch of raw events: what a distributed map stage runs."""
    return window_rows(contributions(events, until=as_of), as_of)


def customer_features(events: pa.Table | pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """All steps on one machine: events -> one feature row per customer, as of ``as_of``."""
    return finalize(aggregate(event_window_rows(events, as_of)), as_of)


def features_from_daily(daily: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Features from stored daily partials (the online path): steps 2 and 3."""
    return finalize(aggregate(window_rows(daily, as_of)), as_of)
