"""Outcome attribution: which decision earned which outcome.

Decisions are the audit records (:mod:`ddso.audit`: ``decision_id``, ``decided_at``,
``customer_pseudonym``, ``channel``, ``offer_id``, ``propensity``); outcomes are events
(offer accepted, enrollment, graduation, churn, purchase) with the customer pseudonymised
the same way, their time in epoch seconds and, when the event carries it, the
``decision_id`` that made the offer. Each outcome goes to at most one decision:

1. the decision it names, if that decision is known, was made for the same customer and
   came before it within the window (an outcome naming a known decision outside the window,
   or another customer's, goes to none: it says whose it is, so no other decision takes the
   credit, and a mismatched customer is a data error to count, not to guess around);
2. else, last touch: the customer's latest decision that contacted them (a channel was
   used) at or before the outcome, within the window;
3. else none (kept, with the reason, so unattributed outcomes can be counted).

Outcomes are deduplicated by ``event_id`` first, and the labels are a pure function of all
decisions and outcomes seen so far: a replayed outcome changes nothing, and a late one
updates the earlier decision's labels to exactly what they would have been had it arrived
on time, whatever the arrival order.

:func:`attribute` gives one row per decision with its labels (accepted, enrolled,
graduated, churned, revenue) and a reward; :func:`logged_bandit_rows` turns those rows into
the (context, action, propensity, reward) rows the off-policy estimators of
:mod:`ddso.policy.ope` read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ddso.errors import UserError

DEFAULT_WINDOW_S = 30 * 24 * 3600.0
"""Attribution window: outcomes more than 30 days after a decision are not its doing."""

OUTCOME_LABELS: dict[str, str] = {
    "offer_accepted": "accepted",
    "enrollment": "enrolled",
    "graduation": "graduated",
    "churn": "churned",
    "purchase": "purchased",
}
"""Event type -> the label it sets on the decision it is attributed to."""

DEFAULT_REWARD: dict[str, float] = {
    "accepted": 0.0,
    "enrolled": 1.0,
    "graduated": 1.0,
    "churned": -1.0,
    "purchased": 0.0,
}
"""Reward per label (enrolment and graduation are the seeds' goals; churn costs one)."""

DECISION_COLUMNS = ("decision_id", "decided_at", "customer_pseudonym", "channel", "offer_id",
                    "propensity")
OUTCOME_COLUMNS = ("event_id", "type", "customer_pseudonym", "event_time", "decision_id",
                   "value")
LABELS = tuple(dict.fromkeys(OUTCOME_LABELS.values()))


@dataclass(frozen=True)
class Attribution:
    labels: pd.DataFrame
    """One row per decision: its columns, the labels (0/1), ``revenue``, ``reward``,
    ``outcomes`` (how many were attributed to it)."""
    outcomes: pd.DataFrame
    """One row per distinct outcome: its columns, ``attributed_to`` (a decision id or
    None) and ``rule`` (``named``, ``last_touch``, or why it went to none)."""


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{what}: missing column(s) {', '.join(missing)}")


def attribute(decisions: pd.DataFrame, outcomes: pd.DataFrame, *,
              window_s: float = DEFAULT_WINDOW_S,
              reward: Mapping[str, float] = DEFAULT_REWARD) -> Attribution:
    """Attribute ``outcomes`` to ``decisions`` (see the module docstring)."""
    if not (np.isfinite(window_s) and window_s > 0):
        raise UserError(f"window_s must be a positive number of seconds, got {window_s!r}")
    _require(decisions, DECISION_COLUMNS, "decisions")
    _require(outcomes, OUTCOME_COLUMNS, "outcomes")
    unknown = sorted(set(outcomes["type"]) - set(OUTCOME_LABELS))
    if unknown:
        raise UserError(f"outcomes: unknown type(s) {unknown}; known: {sorted(OUTCOME_LABELS)}")
    dec = decisions.loc[:, list(DECISION_COLUMNS)].drop_duplicates("decision_id")
    out = (outcomes.loc[:, list(OUTCOME_COLUMNS)]
           .sort_values(["event_id", "event_time"], kind="stable")
           .drop_duplicates("event_id")
           .reset_index(drop=True))
    out["event_time"] = out["event_time"].astype(float)
    attributed = pd.Series([None] * len(out), dtype=object)
    rule = pd.Series(["no contacting decision within the window"] * len(out), dtype=object)

    # 1. The decision the outcome names.
    by_id = dec.set_index("decision_id")
    named = out["decision_id"].notna() & out["decision_id"].isin(by_id.index)
    if named.any():
        ids = out.loc[named, "decision_id"]
        delay = out.loc[named, "event_time"] - by_id["decided_at"].astype(float).reindex(ids).values
        same = (by_id["customer_pseudonym"].reindex(ids).values
                == out.loc[named, "customer_pseudonym"].values)
        ok = named.copy()
        ok[named] = same & (delay >= 0) & (delay <= window_s)
        attributed[ok] = out.loc[ok, "decision_id"]
        rule[ok] = "named"
        rule[named & ~ok] = "named decision outside the window"
        other = named.copy()
        other[named] = ~same
        rule[other] = "named decision of another customer"

    # 2. Last touch among the customer's contacting decisions.
    rest = out.index[attributed.isna() & ~named]
    touches = dec[dec["channel"].notna()].sort_values("decided_at", kind="stable")
    if len(rest) and len(touches):
        left = (out.loc[rest, ["customer_pseudonym", "event_time"]]
                .assign(row=rest).sort_values("event_time", kind="stable"))
        right = touches[["customer_pseudonym", "decided_at", "decision_id"]].assign(
            decided_at=touches["decided_at"].astype(float))
        matched = pd.merge_asof(left, right, left_on="event_time", right_on="decided_at",
                                by="customer_pseudonym", direction="backward",
                                tolerance=window_s, allow_exact_matches=True)
        hit = matched[matched["decision_id"].notna()]
        attributed[hit["row"].to_numpy()] = hit["decision_id"].to_numpy()
        rule[hit["row"].to_numpy()] = "last_touch"

    outcomes_out = out.assign(attributed_to=attributed.to_numpy(), rule=rule.to_numpy())
    return Attribution(_labels(dec, outcomes_out, reward), outcomes_out)


def _labels(dec: pd.DataFrame, out: pd.DataFrame, reward: Mapping[str, float]) -> pd.DataFrame:
    got = out[out["attributed_to"].notna()].assign(label=lambda f: f["type"].map(OUTCOME_LABELS))
    flags = (pd.crosstab(got["attributed_to"], got["label"]).clip(upper=1)
             if len(got) else pd.DataFrame())
    revenue = got.groupby("attributed_to")["value"].sum(min_count=1)
    counts = got.groupby("attributed_to").size()
    labels = dec.set_index("decision_id")
    for name in LABELS:
        col = flags[name] if name in flags else pd.Series(dtype=float)
        labels[name] = col.reindex(labels.index).fillna(0).astype(int)
    labels["revenue"] = revenue.reindex(labels.index).fillna(0.0).astype(float)
    labels["outcomes"] = counts.reindex(labels.index).fillna(0).astype(int)
    labels["reward"] = sum(labels[name] * float(reward.get(name, 0.0)) for name in LABELS)
    return labels.reset_index()


def logged_bandit_rows(labels: pd.DataFrame, records: pd.DataFrame | None = None
                       ) -> pd.DataFrame:
    """(decision_id, context, action, propensity, reward) per decision, for off-policy
    evaluation: the action is ``channel:offer`` (``none`` for no contact); the context is the
    feature vector the decision used, parsed from the audit ``records`` when given."""
    rows = labels.assign(action=[
        "none" if c is None or (isinstance(c, float) and np.isnan(c)) else f"{c}:{o or ''}"
        for c, o in zip(labels["channel"], labels["offer_id"], strict=True)])
    rows = rows[["decision_id", "action", "propensity", "reward"]]
    if records is not None:
        _require(records, ("decision_id", "features"), "records")
        context = records.drop_duplicates("decision_id").set_index("decision_id")["features"]
        rows = rows.assign(context=[json.loads(context[d]) if d in context.index else None
                                    for d in rows["decision_id"]])
    return rows.reset_index(drop=True)
