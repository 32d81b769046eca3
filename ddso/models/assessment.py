"""Financial assessment model: German Credit feature preparation and a constrained XGBoost fit.

Model-only (Ray Train wiring lives in :mod:`ddso.models.xgb`). :func:`prepare_assessment`
turns the frame of :func:`ddso.data.real.load_german_credit` into model features: nominal
attributes stay pandas ``category`` (XGBoost's native categorical splits), and the attributes
whose labels are *ordered* become ordinal numbers so that a monotonic constraint can apply to
them (XGBoost cannot constrain a categorical feature). A label outside the order ("no checking
account", "unknown/ no savings account") becomes NaN plus a 0/1 flag, so the model still sees it.

Monotonic constraints (:data:`GERMAN_MONOTONE`; the target is ``bad``, so +1 means the predicted
probability of default must not fall as the feature grows):

- ``duration_months`` +1: a longer loan is a longer exposure to default, all else fixed;
- ``credit_amount`` +1: a larger loan at the same duration and instalment rate is a larger
  debt for the same applicant;
- ``installment_rate_pct`` +1: a larger share of disposable income going to instalments is a
  heavier burden;
- ``checking_balance_ord`` -1 (< 0 DM, 0-200 DM, >= 200 DM): more money in the account, less risk;
- ``savings_ord`` -1 (< 100, 100-500, 500-1000, >= 1000 DM): more savings, less risk;
- ``employment_ord`` -1 (unemployed, < 1, 1-4, 4-7, >= 7 years): longer tenure, less risk.

Deliberately *not* constrained: ``age_years`` (a protected attribute whose risk profile is not
monotone at high ages), ``existing_credits``, ``residence_since``, ``people_liable`` (no sign a
lender could defend), and the engineered ``monthly_amount`` (credit amount / duration; it moves
with both constrained inputs in opposite directions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import train_test_split

from ddso.data.real import GERMAN_CREDIT_CATEGORIES, GERMAN_CREDIT_NUMERIC
from ddso.errors import UserError

_ORDERED: dict[str, tuple[str, tuple[str, ...]]] = {
    # source column -> (ordinal feature, labels in increasing order; other labels become NaN)
    "checking_account": ("checking_balance_ord",
                         GERMAN_CREDIT_CATEGORIES["checking_account"][:3]),
    "savings": ("savings_ord", GERMAN_CREDIT_CATEGORIES["savings"][:4]),
    "employment_since": ("employment_ord", GERMAN_CREDIT_CATEGORIES["employment_since"]),
}
_FLAGS = {"checking_account": ("no_checking_account", "no checking account"),
          "savings": ("no_savings_account", "unknown/ no savings account")}

GERMAN_MONOTONE: dict[str, int] = {
    "duration_months": 1,
    "credit_amount": 1,
    "installment_rate_pct": 1,
    "checking_balance_ord": -1,
    "savings_ord": -1,
    "employment_ord": -1,
}
"""Monotonic constraints on the prepared features (+1: P(bad) non-decreasing); see module doc."""

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 2,
    "learning_rate": 0.03,
    "min_child_weight": 5.0,
    "subsample": 0.8,
    "colsample_bytree": 0.6,
    "reg_lambda": 10.0,
    "reg_alpha": 0.5,
    "max_cat_to_onehot": 1,
    "nthread": 1,
}
"""Small, strongly regularised trees; early stopping picks the number of rounds."""

NUM_BOOST_ROUND = 1500
EARLY_STOPPING_ROUNDS = 100


def prepare_assessment(df: pd.DataFrame) -> pd.DataFrame:
    """Model features from a German Credit frame (the target column, if present, is dropped).

    Numeric attributes stay as they are, plus ``monthly_amount``; ordered attributes become
    ``*_ord`` numbers (NaN off the order) with ``no_*_account`` flags; the rest stay categorical.
    """
    missing = [c for c in (*GERMAN_CREDIT_NUMERIC, *GERMAN_CREDIT_CATEGORIES) if c not in df]
    if missing:
        raise UserError(f"prepare_assessment: column {missing[0]!r} is missing; pass a frame "
                        "from ddso.data.real.load_german_credit")
    out = pd.DataFrame(index=df.index)
    for column in GERMAN_CREDIT_NUMERIC:
        out[column] = df[column].astype("float64")
    out["monthly_amount"] = out["credit_amount"] / out["duration_months"].clip(lower=1)
    for column, labels in GERMAN_CREDIT_CATEGORIES.items():
        values = df[column].astype(str)
        if column in _ORDERED:
            name, order = _ORDERED[column]
            out[name] = values.map({label: float(i) for i, label in enumerate(order)})
            if column in _FLAGS:
                flag, label = _FLAGS[column]
                out[flag] = (values == label).astype("float64")
        else:
            out[column] = pd.Categorical(values, categories=list(labels))
    return out


def _monotone_tuple(columns: list[str], monotone: dict[str, int]) -> str:
    return "(" + ",".join(str(monotone.get(c, 0)) for c in columns) + ")"


def fit_assessment(X: pd.DataFrame, y: pd.Series | np.ndarray,
                   params: dict[str, Any] | None = None, *,
                   monotone: dict[str, int] | None = None,
                   num_boost_round: int = NUM_BOOST_ROUND,
                   early_stopping_rounds: int | None = EARLY_STOPPING_ROUNDS,
                   valid_fraction: float = 0.2, seed: int = 0) -> xgb.Booster:
    """Train an XGBoost booster for P(bad) on prepared features ``X`` (see prepare_assessment).

    ``params`` override :data:`DEFAULT_PARAMS`; ``monotone`` defaults to
    :data:`GERMAN_MONOTONE` (pass ``{}`` for none). With ``early_stopping_rounds``, a stratified
    ``valid_fraction`` of ``X`` is held out to pick the number of rounds, then the model is
    refitted on all of ``X`` with that many rounds (scaled up for the larger sample).
    """
    y = np.asarray(y, dtype="float64")
    if len(X) != len(y) or len(X) == 0:
        raise UserError(f"fit_assessment: X has {len(X)} rows and y {len(y)}; need equal, > 0")
    if not np.isin(y, (0.0, 1.0)).all():
        raise UserError("fit_assessment: y must be 0/1 (1 = bad)")
    monotone = GERMAN_MONOTONE if monotone is None else monotone
    unknown = [c for c in monotone if c not in X.columns]
    if unknown:
        raise UserError(f"fit_assessment: constrained feature {unknown[0]!r} is not in X")
    categorical = [c for c in monotone if monotone[c] and isinstance(X[c].dtype,
                                                                   pd.CategoricalDtype)]
    if categorical:
        raise UserError(f"fit_assessment: {categorical[0]!r} is categorical; XGBoost can only "
                        "constrain numeric features")
    full = {**DEFAULT_PARAMS, "seed": seed, **(params or {})}
    full["monotone_constraints"] = _monotone_tuple(list(X.columns), monotone)
    rounds = num_boost_round
    if early_stopping_rounds:
        X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=valid_fraction,
                                                  stratify=y, random_state=seed)
        dtr = xgb.DMatrix(X_tr, label=y_tr, enable_categorical=True)
        dva = xgb.DMatrix(X_va, label=y_va, enable_categorical=True)
        inner = xgb.train(full, dtr, num_boost_round=num_boost_round, evals=[(dva, "valid")],
                          early_stopping_rounds=early_stopping_rounds, verbose_eval=False)
        rounds = max(1, int(round((inner.best_iteration + 1) / (1.0 - valid_fraction))))
    dall = xgb.DMatrix(X, label=y, enable_categorical=True)
    return xgb.train(full, dall, num_boost_round=rounds)


def predict_bad_proba(model: xgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """P(bad) for prepared features ``X`` (same columns and dtypes as at training)."""
    if list(X.columns) != list(model.feature_names or []):
        raise UserError("predict_bad_proba: X's columns differ from the model's "
                        f"({list(X.columns)[:3]}... vs {(model.feature_names or [])[:3]}...); "
                        "prepare X with prepare_assessment")
    return model.predict(xgb.DMatrix(X, enable_categorical=True))
