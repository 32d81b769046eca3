import numpy as np
import pytest
import xgboost as xgb

from ddso.models import scorecard
from ddso.models.reasons import describe, top_reasons
from ddso.schemas.base import Band

pytestmark = pytest.mark.unit

GOOD = {
    "debt_to_income": 0.1,
    "on_time_ratio_12m": 1.0,
    "delinquencies_24m": 0,
    "credit_utilisation": 0.1,
    "savings_ratio": 0.8,
    "income_stability": 0.9,
}


def test_reasons_name_only_features_the_model_used(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    names = ["late_payments_12m", "debt_to_income", "unused_feature"]
    X[:, 2] = 0.0  # constant: the model can never split on it
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, y, feature_names=names), 20
    )
    row = np.array([[3.0, 0.4, 0.0]], dtype=np.float32)
    contrib = booster.predict(xgb.DMatrix(row, feature_names=names), pred_contribs=True)[0]
    reasons = top_reasons(contrib, names, row[0], k=3)
    assert [r.feature for r in reasons] == ["late_payments_12m", "debt_to_income"]
    assert reasons[0].text == "3 late payments in 12 months"
    assert reasons[0].contribution > 0
    # contributions + bias reproduce the margin: the reasons are the model's own arithmetic
    margin = booster.predict(xgb.DMatrix(row, feature_names=names), output_margin=True)[0]
    assert contrib.sum() == pytest.approx(margin, rel=1e-5)


def test_describe_unknown_feature_and_never():
    assert describe("mystery_score", 0.5) == "mystery score = 0.5"
    assert describe("recency_days", 3650.0) == "no purchase on record"
    assert describe("recency_days", 12.0) == "last purchase 12 days ago"


def test_scorecard_is_monotone_and_banded():
    good = scorecard.health_score(GOOD)
    assert scorecard.band(good) == Band.A
    for delinquencies in range(6):
        worse = scorecard.health_score({**GOOD, "delinquencies_24m": delinquencies + 1})
        assert worse <= scorecard.health_score({**GOOD, "delinquencies_24m": delinquencies})
    assert scorecard.health_score({**GOOD, "debt_to_income": 1.0}) < good
    assert scorecard.band(0) == Band.E and scorecard.band(650) == Band.B
