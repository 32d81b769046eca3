"""Training sets of the customer models from served decisions and the outcomes that followed.

Once the platform serves, the retraining job (``pipelines.retrain``) rebuilds the
``propensity`` and ``churn`` training sets from what it has seen itself:

- rows: the audited decisions (``ddso.audit``), at most one per customer per day (the
  day's first), cold starts left out (their feature vector is the cold-start default, not
  the customer's). The features are exactly the vector the decision was made on, frozen in
  the audit record, so the set is point in time by construction;
- labels: whether the customer bought (``purchase``) or churned (``churn``) within
  ``horizon_s`` after the decision, read from the distinct outcomes the feedback job
  collected from the offline store (the label store's ``outcomes``, deduplicated by event
  id, so replayed or late events count once and where they belong);
- censoring: a row whose horizon has not ended by the newest time seen (decision or
  outcome) is left out: no outcome yet is not a negative yet.

The models keep their meaning (purchase / churn within a horizon of a point in time, on the
customer feature set), so a candidate trained here is judged against the champion trained on
the generated or warehouse data by the same gate, on the same test rows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ddso.errors import UserError
from ddso.features.sets import CUSTOMER_FEATURES

LABEL_EVENTS: dict[str, str] = {"propensity": "purchase", "churn": "churn"}
"""Model -> the outcome type its label is."""

DECISION_COLUMNS = ["decision_id", "decided_at", "customer_pseudonym", "features"]


def decision_rows(records: pd.DataFrame) -> pd.DataFrame:
    """One row per customer per day (its first decision) with the audited feature vector:
    ``customer_pseudonym``, ``decided_at`` (epoch s), ``timestamp`` (UTC) and every name of
    :data:`CUSTOMER_FEATURES`. Cold starts are left out."""
    missing = [c for c in DECISION_COLUMNS if c not in records.columns]
    if missing:
        raise UserError(f"audit records: missing column(s) {', '.join(missing)}")
    rows = records
    if "cold_start" in rows.columns:
        rows = rows[~rows["cold_start"].fillna(False).astype(bool)]
    rows = rows.sort_values(["decided_at", "decision_id"], kind="stable")
    day = (rows["decided_at"].astype(float) // 86_400).astype(np.int64)
    rows = rows[~pd.DataFrame({"c": rows["customer_pseudonym"], "d": day}).duplicated()]
    vectors = pd.DataFrame([json.loads(f) for f in rows["features"]], index=rows.index)
    absent = [f for f in CUSTOMER_FEATURES if f not in vectors.columns]
    if absent:
        raise UserError(f"audit records: feature vectors lack {', '.join(absent[:3])}"
                        f"{' ...' if len(absent) > 3 else ''}; they were written by another "
                        "feature set version, retrain on a dataset (--data) instead")
    out = rows[["decision_id", "customer_pseudonym", "decided_at"]].astype(
        {"decided_at": float}).join(vectors[list(CUSTOMER_FEATURES)].astype(float))
    out["timestamp"] = pd.to_datetime(out["decided_at"], unit="s", utc=True)
    return out.reset_index(drop=True)


def label_within(rows: pd.DataFrame, outcomes: pd.DataFrame, event_type: str,
                 horizon_s: float) -> pd.Series:
    """1 where the row's customer had an ``event_type`` outcome in (decided_at,
    decided_at + horizon_s], else 0; NaN where the horizon has not ended by the newest time
    in ``rows`` or ``outcomes`` (censored)."""
    if not (np.isfinite(horizon_s) and horizon_s > 0):
        raise UserError(f"horizon must be a positive number of seconds, got {horizon_s!r}")
    events = outcomes.loc[outcomes["type"] == event_type, ["customer_pseudonym", "event_time"]]
    events = events.astype({"event_time": float}).sort_values("event_time")
    left = rows[["customer_pseudonym", "decided_at"]].reset_index().sort_values("decided_at")
    # The customer's first such outcome strictly after the decision.
    nxt = pd.merge_asof(left, events, left_on="decided_at", right_on="event_time",
                        by="customer_pseudonym", direction="forward",
                        allow_exact_matches=False).set_index("index").sort_index()
    hit = (nxt["event_time"] <= nxt["decided_at"] + horizon_s).astype(float)
    newest = max(float(rows["decided_at"].max()),
                 float(outcomes["event_time"].astype(float).max()) if len(outcomes) else -np.inf)
    return hit.where(nxt["decided_at"] + horizon_s <= newest).rename(event_type)


def customer_training_set(records: pd.DataFrame, outcomes: pd.DataFrame, model: str,
                          horizon_s: float) -> pd.DataFrame:
    """The rows of :func:`decision_rows` with ``label`` of ``model`` (see
    :data:`LABEL_EVENTS`), censored rows dropped."""
    if model not in LABEL_EVENTS:
        raise UserError(f"unknown customer model {model!r}; known: {sorted(LABEL_EVENTS)}")
    rows = decision_rows(records)
    label = label_within(rows, outcomes, LABEL_EVENTS[model], horizon_s)
    return rows.assign(label=label).dropna(subset=["label"]).reset_index(drop=True)
