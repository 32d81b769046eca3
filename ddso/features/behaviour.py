"""Behavioural, RFM and CRM features of a customer, as pure functions on event batches.

Computing features is split in three pure steps so that the same definitions run in Ray Data
(distributed over many batches), in a plain pandas job and on one customer online:

1. :func:`event_columns` turns a batch of raw events (the flat event table) into one narrow
   numeric row per event: indicator and amount columns per window, and timestamps.
2. The rows are summed / max-ed / min-ed per customer (:data:`SUM_COLUMNS`,
   :data:`MAX_COLUMNS`, :data:`MIN_COLUMNS`); these partial aggregates merge associatively,
   so any batching and any order gives the same result.
3. :func:`finalize` turns the per-customer aggregates into features as of ``as_of``.

Events after ``as_of`` are dropped in step 1: a feature never sees the future.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

WINDOWS_DAYS = (7, 30, 90, 365)
_DAY_S = 86_400.0
NEVER_DAYS = 3650.0
"""Value of a ``days_since_*`` feature when the thing never happened (ten years)."""

_CONTACT_TYPES = ("crm_call", "crm_email", "crm_meeting", "offer_shown")

# (output column, event types counted, windows)
_COUNTS: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("purchases", ("purchase",), (30, 90, 365)),
    ("views", ("view",), (7, 30)),
    ("clicks", ("click",), (7, 30)),
    ("cart_adds", ("cart_add",), (30,)),
    ("cart_removes", ("cart_remove",), (30,)),
    ("sessions", ("session_start",), (30, 90)),
    ("contacts", _CONTACT_TYPES, (7, 30)),
    ("complaints", ("complaint",), (365,)),
    ("offers_shown", ("offer_shown",), (90,)),
    ("offers_accepted", ("offer_accepted",), (365,)),
)

SUM_COLUMNS: tuple[str, ...] = (
    *(f"{name}_{w}d" for name, _, windows in _COUNTS for w in windows),
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "gross_365d",
    "discount_365d",
)
MAX_COLUMNS: tuple[str, ...] = ("last_event_s", "last_purchase_s", "last_contact_s")
MIN_COLUMNS: tuple[str, ...] = ("first_event_s",)

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
    "offers_shown_90d",
    "offers_accepted_365d",
    "days_since_last_event",
    "days_since_last_contact",
    "tenure_days",
)
"""The behavioural features, in model order."""


def _epoch_seconds(ts: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return (
        pc.cast(pc.cast(ts, pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy(
            zero_copy_only=False
        )
        / 1e6
    )


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


def event_columns(batch: pa.Table | pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Step 1: one numeric row per event at or before ``as_of`` (pure, batch-shaped)."""
    table = (
        batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
    )
    t = _epoch_seconds(table["event_time"])
    keep = t <= as_of.timestamp()
    table = table.filter(pa.array(keep))
    t = t[keep]
    n = table.num_rows
    kind = table["type"].to_numpy(zero_copy_only=False).astype(str)
    age_days = (as_of.timestamp() - t) / _DAY_S
    out: dict[str, np.ndarray] = {
        "customer_id": table["customer_id"].to_numpy(zero_copy_only=False)
    }
    for name, types, windows in _COUNTS:
        hit = np.isin(kind, types)
        for w in windows:
            out[f"{name}_{w}d"] = (hit & (age_days < w)).astype(np.int64)
    if "lines" in table.column_names:
        net, gross = _purchase_amounts(table["lines"], n)
    else:
        net = gross = np.zeros(n)
    for w in (30, 90, 365):
        out[f"monetary_{w}d"] = np.where(age_days < w, net, 0.0)
    in_year = age_days < 365
    out["gross_365d"] = np.where(in_year, gross, 0.0)
    out["discount_365d"] = np.where(in_year, gross - net, 0.0)
    # 0.0 means "never": a max over seconds since 1970 ignores it whenever a real time exists.
    out["last_event_s"] = t
    out["last_purchase_s"] = np.where(kind == "purchase", t, 0.0)
    out["last_contact_s"] = np.where(np.isin(kind, _CONTACT_TYPES), t, 0.0)
    out["first_event_s"] = t
    return pd.DataFrame(out)


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Step 2 on one machine: merge event rows (or partial aggregates) per customer."""
    grouped = rows.groupby("customer_id", sort=True)
    parts = [grouped[list(SUM_COLUMNS)].sum(), grouped[list(MAX_COLUMNS)].max()]
    parts.append(grouped[list(MIN_COLUMNS)].min())
    return pd.concat(parts, axis=1).reset_index()


def _days_since(as_of_s: float, seconds: pd.Series) -> np.ndarray:
    s = seconds.to_numpy(dtype=float)
    return np.where(s > 0, (as_of_s - s) / _DAY_S, NEVER_DAYS)


def finalize(agg: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Step 3: per-customer aggregates -> features as of ``as_of`` (columns: FEATURE_COLUMNS)."""
    a = agg
    now = as_of.timestamp()
    freq365 = a["purchases_365d"].to_numpy(dtype=float)
    carts = a["cart_adds_30d"].to_numpy(dtype=float)
    gross = a["gross_365d"].to_numpy(dtype=float)
    out = pd.DataFrame(
        {
            "customer_id": a["customer_id"].to_numpy(),
            "recency_days": _days_since(now, a["last_purchase_s"]),
            "frequency_30d": a["purchases_30d"].to_numpy(dtype=float),
            "frequency_90d": a["purchases_90d"].to_numpy(dtype=float),
            "frequency_365d": freq365,
            "monetary_30d": a["monetary_30d"].to_numpy(dtype=float),
            "monetary_90d": a["monetary_90d"].to_numpy(dtype=float),
            "monetary_365d": a["monetary_365d"].to_numpy(dtype=float),
            "avg_order_value_365d": np.divide(
                a["monetary_365d"].to_numpy(dtype=float),
                freq365,
                out=np.zeros(len(a)),
                where=freq365 > 0,
            ),
            "cart_abandonment_30d": np.divide(
                np.clip(carts - a["purchases_30d"].to_numpy(dtype=float), 0, None),
                carts,
                out=np.zeros(len(a)),
                where=carts > 0,
            ),
            "discount_share_365d": np.divide(
                a["discount_365d"].to_numpy(dtype=float),
                gross,
                out=np.zeros(len(a)),
                where=gross > 0,
            ),
            "days_since_last_event": _days_since(now, a["last_event_s"]),
            "days_since_last_contact": _days_since(now, a["last_contact_s"]),
            "tenure_days": _days_since(now, a["first_event_s"]),
        }
    )
    for col in FEATURE_COLUMNS:
        if col not in out.columns:
            out[col] = a[col].to_numpy(dtype=float)
    return out[["customer_id", *FEATURE_COLUMNS]]


def customer_features(events: pa.Table | pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """All three steps on one machine: events -> one feature row per customer."""
    return finalize(aggregate(event_columns(events, as_of)), as_of)
