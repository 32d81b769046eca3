"""Outcome attribution: named decisions, last touch within the window, dedupe, late outcomes."""

import json

import numpy as np
import pandas as pd
import pytest

from ddso.errors import UserError
from ddso.policy.attribution import DEFAULT_REWARD, attribute, logged_bandit_rows

pytestmark = pytest.mark.unit

DAY = 24 * 3600.0


def decisions() -> pd.DataFrame:
    return pd.DataFrame([
        # customer a: contacted on day 0 and day 10, a no-contact decision on day 12
        ("d1", 0 * DAY, "a", "email", "P1", 0.8),
        ("d2", 10 * DAY, "a", "sms", "P2", 0.5),
        ("d3", 12 * DAY, "a", None, None, 0.9),
        # customer b: one contact on day 1
        ("d4", 1 * DAY, "b", "call", "P1", 0.25),
    ], columns=["decision_id", "decided_at", "customer_pseudonym", "channel", "offer_id",
                "propensity"])


def outcome(event_id, type_, customer, day, decision_id=None, value=np.nan):
    return (event_id, type_, customer, day * DAY, decision_id, value)


def outcomes(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["event_id", "type", "customer_pseudonym",
                                             "event_time", "decision_id", "value"])


def test_a_named_decision_wins_over_last_touch():
    a = attribute(decisions(), outcomes(outcome("e1", "offer_accepted", "a", 11, "d1")))
    (row,) = a.outcomes.itertuples()
    assert row.attributed_to == "d1" and row.rule == "named"
    labels = a.labels.set_index("decision_id")
    assert labels.loc["d1", "accepted"] == 1 and labels.loc["d2", "accepted"] == 0


def test_last_touch_takes_the_latest_contacting_decision_before_the_outcome():
    a = attribute(decisions(), outcomes(outcome("e1", "enrollment", "a", 13),
                                        outcome("e2", "enrollment", "a", 5),
                                        outcome("e3", "graduation", "b", 2)))
    by = a.outcomes.set_index("event_id")
    assert by.loc["e1", "attributed_to"] == "d2"  # d3 (day 12) made no contact
    assert by.loc["e2", "attributed_to"] == "d1"
    assert by.loc["e3", "attributed_to"] == "d4" and by.loc["e3", "rule"] == "last_touch"
    labels = a.labels.set_index("decision_id")
    assert labels.loc["d2", "enrolled"] == 1 and labels.loc["d2", "reward"] == 1.0
    assert labels.loc["d4", "graduated"] == 1 and labels.loc["d3", "outcomes"] == 0


def test_outcomes_outside_the_window_or_before_any_contact_are_kept_unattributed():
    a = attribute(decisions(), outcomes(outcome("e1", "churn", "b", 40),
                                        outcome("e2", "churn", "c", 2),
                                        outcome("e3", "offer_accepted", "a", 50, "d2")),
                  window_s=30 * DAY)
    assert a.outcomes["attributed_to"].isna().all()
    by = a.outcomes.set_index("event_id")["rule"]
    assert by["e3"] == "named decision outside the window"
    assert by["e1"] == by["e2"] == "no contacting decision within the window"
    assert a.labels["outcomes"].sum() == 0


def test_a_replayed_outcome_counts_once_and_revenue_adds_up():
    rows = [outcome("e1", "purchase", "a", 11, value=120.0),
            outcome("e1", "purchase", "a", 11, value=120.0),
            outcome("e2", "purchase", "a", 11.5, value=30.0)]
    labels = attribute(decisions(), outcomes(*rows)).labels.set_index("decision_id")
    assert labels.loc["d2", "revenue"] == 150.0 and labels.loc["d2", "purchased"] == 1
    assert labels.loc["d2", "outcomes"] == 2


def test_a_late_outcome_gives_the_labels_of_an_on_time_one_whatever_the_order():
    rows = [outcome("e1", "enrollment", "a", 11), outcome("e2", "graduation", "a", 20),
            outcome("e3", "churn", "b", 3), outcome("e4", "offer_accepted", "b", 2, "d4")]
    at_once = attribute(decisions(), outcomes(*rows)).labels
    first = attribute(decisions(), outcomes(*rows[:2])).labels
    assert first.set_index("decision_id").loc["d4", "churned"] == 0
    for order in ([3, 1, 0, 2], [2, 3, 1, 0]):
        late = attribute(decisions(), outcomes(*[rows[i] for i in order])).labels
        pd.testing.assert_frame_equal(late, at_once)
    assert at_once.set_index("decision_id").loc["d4", "reward"] == DEFAULT_REWARD["churned"]


def test_logged_bandit_rows_carry_action_propensity_reward_and_context():
    a = attribute(decisions(), outcomes(outcome("e1", "enrollment", "a", 11)))
    records = pd.DataFrame({"decision_id": ["d1", "d2", "d3", "d4"],
                            "features": [json.dumps({"x": float(i)}) for i in range(4)]})
    rows = logged_bandit_rows(a.labels, records).set_index("decision_id")
    assert rows.loc["d2", "action"] == "sms:P2" and rows.loc["d3", "action"] == "none"
    assert rows.loc["d2", "reward"] == 1.0 and rows.loc["d4", "propensity"] == 0.25
    assert rows.loc["d2", "context"] == {"x": 1.0}


def test_bad_input_names_the_problem():
    with pytest.raises(UserError, match="missing column"):
        attribute(decisions().drop(columns="channel"), outcomes())
    with pytest.raises(UserError, match="unknown type"):
        attribute(decisions(), outcomes(outcome("e1", "teleport", "a", 1)))
    with pytest.raises(UserError, match="window_s"):
        attribute(decisions(), outcomes(), window_s=0)
