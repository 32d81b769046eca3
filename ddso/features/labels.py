"""Labels for the platform's models, from the event log: what happened after a point in time.

Each function returns a *spine* (``customer_id``, ``timestamp`` and a 0/1 ``label``, plus
context columns) for :func:`ddso.features.training_sets.point_in_time`, which adds the
features as they were at ``timestamp``. A label only ever looks at events *after* its row's
timestamp, and a row is only made when its outcome can be known by the end of the data.

- :func:`cutoff_spine`: customers active at each cutoff; label: an event of the given types
  in ``(cutoff, cutoff + horizon]`` (churn, purchase).
- :func:`offer_spine`: every offer shown (customer, product, channel, time); label: the
  customer enrolled in that product within ``window`` of it (the seeds' conversion).
- :func:`program_spine`: every enrolment whose program ended in the data; labels: graduated,
  and ``missed_payments`` (dropped out for missed payments, or paid 30+ days late).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ddso.errors import UserError

LATE_DAYS = 30
"""A payment this many days late or more counts as missed."""

EVENT_COLUMNS = [
    "customer_id", "type", "event_time", "product_id", "channel", "offer_id", "enrollment_id",
    "days_late", "reason",
]
"""The event columns the label functions read."""


def _utc(values) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def cutoffs_between(start: datetime, end: datetime, horizon: timedelta,
                    count: int) -> list[datetime]:
    """``count`` cutoffs one ``horizon`` apart, the last at ``end - horizon``, all after start.

    One horizon apart, so the label windows of consecutive cutoffs never overlap: a model
    trained on earlier cutoffs never saw an outcome from a later cutoff's window.
    """
    last = end - horizon
    cuts = [last - i * horizon for i in reversed(range(count))]
    cuts = [c for c in cuts if c > start]
    if len(cuts) < 3:
        raise UserError(
            f"only {len(cuts)} cutoffs fit between {start:%Y-%m-%d} and {end:%Y-%m-%d} with a "
            f"{horizon.days}-day horizon; need at least 3 (train, valid, test): use a longer "
            "dataset or a shorter horizon"
        )
    return cuts


def cutoff_spine(
    events: pd.DataFrame,
    customers: pd.DataFrame,
    cutoffs: Sequence[datetime],
    horizon: timedelta,
    label_types: Sequence[str],
    exit_types: Sequence[str] = ("churn",),
) -> pd.DataFrame:
    """Customers active at each cutoff; label 1 if a ``label_types`` event follows in horizon.

    Active: created at or before the cutoff and no ``exit_types`` event at or before it.
    ``customers`` needs ``customer_id`` and ``created_at``.
    """
    ev = events[["customer_id", "type", "event_time"]]
    t = _utc(ev["event_time"])
    exited = ev.loc[ev["type"].isin(exit_types)].assign(t=t).groupby("customer_id")["t"].min()
    labelled = ev.loc[ev["type"].isin(label_types)].assign(t=t)
    created = _utc(customers["created_at"])
    rows = []
    for cutoff in cutoffs:
        cut = pd.Timestamp(cutoff)
        until = cut + horizon
        active = customers.loc[created <= cut, ["customer_id"]]
        gone = exited.reindex(active["customer_id"])
        active = active[~(gone.notna() & (gone <= cut)).to_numpy()]
        window = labelled[(labelled["t"] > cut) & (labelled["t"] <= until)]
        hit = active["customer_id"].isin(window["customer_id"])
        rows.append(pd.DataFrame({
            "customer_id": active["customer_id"].to_numpy(),
            "timestamp": cut,
            "label": hit.to_numpy().astype("int32"),
        }))
    return pd.concat(rows, ignore_index=True)


def offer_spine(events: pd.DataFrame, end: datetime, window: timedelta) -> pd.DataFrame:
    """One row per offer shown by ``end - window``; label 1 if that product was enrolled in.

    Columns: customer_id, timestamp (offer time), offer_id, product_id, channel, label.
    """
    t = _utc(events["event_time"])
    shown = events.loc[events["type"] == "offer_shown",
                       ["customer_id", "offer_id", "product_id", "channel"]].assign(
                           timestamp=t[events["type"] == "offer_shown"])
    shown = shown[shown["timestamp"] <= pd.Timestamp(end) - window]
    enrolled = events.loc[events["type"] == "enrollment", ["customer_id", "product_id"]].assign(
        enrolled_at=t[events["type"] == "enrollment"])
    pairs = shown.reset_index(drop=True).reset_index(names="row").merge(
        enrolled, on=["customer_id", "product_id"], how="left")
    ok = (pairs["enrolled_at"] > pairs["timestamp"]) & (
        pairs["enrolled_at"] <= pairs["timestamp"] + window)
    converted = pairs.loc[ok, "row"].unique()
    out = shown.reset_index(drop=True)
    out["label"] = np.isin(np.arange(len(out)), converted).astype("int32")
    return out[["customer_id", "timestamp", "offer_id", "product_id", "channel", "label"]]


def program_spine(events: pd.DataFrame) -> pd.DataFrame:
    """One row per enrolment whose program ended (graduation or dropout) in the data.

    Columns: customer_id, timestamp (enrolment time), enrollment_id, product_id, ended_at,
    graduated (0/1), missed_payments (0/1: dropped out for missed payments, or any payment
    :data:`LATE_DAYS` or more late).
    """
    t = _utc(events["event_time"])
    kind = events["type"]
    enrol = events.loc[kind == "enrollment", ["customer_id", "enrollment_id", "product_id"]]
    enrol = enrol.assign(timestamp=t[kind == "enrollment"])
    ends = events.loc[kind.isin(["graduation", "dropout"]), ["enrollment_id", "type", "reason"]]
    ends = ends.assign(ended_at=t[kind.isin(["graduation", "dropout"])])
    late = events.loc[(kind == "program_payment") & (events["days_late"] >= LATE_DAYS),
                      "enrollment_id"].unique()
    out = enrol.merge(ends, on="enrollment_id", how="inner")
    out["graduated"] = (out["type"] == "graduation").astype("int32")
    out["missed_payments"] = (
        ((out["type"] == "dropout") & (out["reason"] == "missed_payments"))
        | out["enrollment_id"].isin(late)
    ).astype("int32")
    cols = ["customer_id", "timestamp", "enrollment_id", "product_id", "ended_at", "graduated",
            "missed_payments"]
    return out[cols].sort_values("timestamp", ignore_index=True)
