"""Customer-model training sets from audited decisions and the outcomes that followed."""

import json

import numpy as np
import pandas as pd
import pytest

from ddso.errors import UserError
from ddso.features.outcome_sets import customer_training_set, decision_rows, label_within
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features

pytestmark = pytest.mark.unit

DAY = 86_400.0


def records(rows: list[tuple[str, str, float]], cold: set[str] = frozenset()) -> pd.DataFrame:
    """Audit records (decision id, customer, time) with a feature vector marking the id."""
    return pd.DataFrame([{
        "decision_id": d, "customer_pseudonym": c, "decided_at": t, "cold_start": d in cold,
        "features": json.dumps({**cold_start_features(), "frequency_30d": float(i)}),
    } for i, (d, c, t) in enumerate(rows)])


def outcomes(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"event_id": f"e{i}", "type": kind, "customer_pseudonym": c,
                          "event_time": t} for i, (kind, c, t) in enumerate(rows)])


def test_a_label_is_an_outcome_strictly_after_the_decision_within_the_horizon():
    rows = decision_rows(records([("d1", "a", 0.0), ("d2", "b", 0.0), ("d3", "c", 0.0),
                                  ("d4", "d", 50 * DAY)]))
    seen = outcomes([("purchase", "a", 5 * DAY), ("purchase", "b", 0.0),
                     ("purchase", "c", 31 * DAY), ("churn", "a", 2 * DAY),
                     ("purchase", "d", 55 * DAY)])
    label = label_within(rows, seen, "purchase", 30 * DAY)
    # a bought within 30 days; b only at the decision itself; c too late; d: horizon open
    assert label.tolist()[:3] == [1.0, 0.0, 0.0] and np.isnan(label.iloc[3])
    assert label_within(rows, seen, "churn", 30 * DAY).tolist()[:3] == [1.0, 0.0, 0.0]
    # an outcome of another customer never labels this one
    assert label_within(rows, outcomes([("purchase", "z", DAY), ("purchase", "z", 90 * DAY)]),
                        "purchase", 30 * DAY).tolist()[:3] == [0.0, 0.0, 0.0]


def test_rows_are_the_audited_vectors_one_per_customer_day_without_cold_starts():
    rows = decision_rows(records([("d1", "a", 10.0), ("d2", "a", 20.0), ("d3", "a", DAY + 1),
                                  ("d4", "b", 5.0)], cold={"d4"}))
    assert rows["decision_id"].tolist() == ["d1", "d3"]
    assert rows["frequency_30d"].tolist() == [0.0, 2.0]
    assert list(rows.columns[3:-1]) == list(CUSTOMER_FEATURES)
    assert str(rows["timestamp"].dt.tz) == "UTC"


def test_vectors_of_another_feature_set_are_refused_by_name():
    bad = records([("d1", "a", 0.0)]).assign(features=json.dumps({"x": 1.0}))
    with pytest.raises(UserError, match="feature vectors lack recency_days"):
        decision_rows(bad)


def test_the_training_set_drops_censored_rows_and_names_unknown_models():
    recs = records([("d1", "a", 0.0), ("d2", "b", 40 * DAY)])
    frame = customer_training_set(recs, outcomes([("churn", "a", DAY)]), "churn", 30 * DAY)
    assert frame["decision_id"].tolist() == ["d1"] and frame["label"].tolist() == [1.0]
    with pytest.raises(UserError, match="unknown customer model 'ltv'"):
        customer_training_set(recs, outcomes([]), "ltv", 30 * DAY)
