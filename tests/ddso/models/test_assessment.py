"""Assessment model: feature preparation and monotonic constraints holding on a grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ddso.data.real import load_german_credit
from ddso.errors import UserError
from ddso.models.assessment import (
    GERMAN_MONOTONE,
    fit_assessment,
    predict_bad_proba,
    prepare_assessment,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def german():
    df = load_german_credit()
    X = prepare_assessment(df)
    # Larger steps and fewer rounds than the default, to keep the test fast.
    model = fit_assessment(X, df["bad"], params={"learning_rate": 0.2, "max_depth": 3},
                           num_boost_round=150, early_stopping_rounds=None)
    return df, X, model


def test_prepare_assessment_features(german):
    df, X, _ = german
    assert set(GERMAN_MONOTONE) <= set(X.columns)
    assert "bad" not in X.columns
    for column in GERMAN_MONOTONE:
        assert not isinstance(X[column].dtype, pd.CategoricalDtype)
    assert isinstance(X["purpose"].dtype, pd.CategoricalDtype)
    no_account = df["checking_account"] == "no checking account"
    assert X.loc[no_account, "checking_balance_ord"].isna().all()
    assert (X.loc[no_account, "no_checking_account"] == 1).all()
    assert X.loc[~no_account, "checking_balance_ord"].between(0, 2).all()
    assert X["employment_ord"].notna().all()


def test_predictions_are_probabilities(german):
    df, X, model = german
    p = predict_bad_proba(model, X)
    assert p.shape == (len(X),) and np.all((p > 0) & (p < 1))
    assert p[df["bad"] == 1].mean() > p[df["bad"] == 0].mean()


@pytest.mark.parametrize("feature", sorted(GERMAN_MONOTONE))
def test_monotone_on_a_grid(german, feature):
    _, X, model = german
    sign = GERMAN_MONOTONE[feature]
    observed = X[feature].dropna()
    grid = np.unique(np.concatenate([observed.quantile(np.linspace(0, 1, 25)).to_numpy(),
                                     [observed.min() - 1, observed.max() * 2]]))
    rows = X.sample(60, random_state=1)
    batch = rows.loc[rows.index.repeat(len(grid))].reset_index(drop=True)
    batch[feature] = np.tile(grid, len(rows))
    p = predict_bad_proba(model, batch).reshape(len(rows), len(grid))
    steps = np.diff(p, axis=1) * sign
    assert steps.min() >= -1e-6, f"{feature}: P(bad) moves against its constraint"
    assert np.abs(steps).max() > 0  # the feature is actually used


def test_unconstrained_model_and_errors(german):
    df, X, _ = german
    free = fit_assessment(X, df["bad"], monotone={}, num_boost_round=20,
                          early_stopping_rounds=None)
    assert free.num_boosted_rounds() == 20
    stopped = fit_assessment(X, df["bad"], params={"learning_rate": 0.3},
                             num_boost_round=300, early_stopping_rounds=10)
    assert 1 <= stopped.num_boosted_rounds() < 300 * 1.25 + 1
    with pytest.raises(UserError, match="categorical"):
        fit_assessment(X, df["bad"], monotone={"purpose": 1})
    with pytest.raises(UserError, match="not in X"):
        fit_assessment(X, df["bad"], monotone={"nope": 1})
    with pytest.raises(UserError):
        fit_assessment(X, np.full(len(X), 2.0))
    with pytest.raises(UserError, match="columns"):
        predict_bad_proba(free, X.drop(columns="purpose"))
    with pytest.raises(UserError, match="missing"):
        prepare_assessment(df.drop(columns="housing"))
