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

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import train_test_split

from ddso.data.real import GERMAN_CREDIT_CATEGORIES, GERMAN_CREDIT_NUMERIC
from ddso.errors import UserError
from ddso.features.context import PROGRAM_KINDS, offer_context
from ddso.features.financial import FEATURE_COLUMNS as FINANCIAL_FEATURES
from ddso.models import scorecard
from ddso.models.binary import BinaryModel, monotone_constraints
from ddso.models.reasons import Reason
from ddso.models.registry import ModelRegistry
from ddso.policy.eligibility import eligible_mask
from ddso.schemas.base import Channel

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
    full["monotone_constraints"] = monotone_constraints(list(X.columns), monotone)
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


# --- The platform's assessment: financial health on the platform's own features ------------
#
# Trained by ``pipelines.train_assessment`` on enrolments whose program ended: ``risk`` is
# P(missed payments: a dropout for missed payments or a payment 30+ days late), ``graduation``
# P(the program is completed). Both read the financial features as they were at enrolment;
# graduation also reads the program (kind, payment against income).

RISK_MODEL, GRADUATION_MODEL = "assessment_risk", "graduation"

RISK_FEATURES: tuple[str, ...] = (
    *FINANCIAL_FEATURES, "tenure_days", "complaints_365d", "monetary_365d", "age",
)
RISK_MONOTONE: dict[str, int] = {
    # +1: P(missed payments) never falls as the feature grows.
    "delinquencies_24m": 1,
    "late_payments_12m": 1,
    "debt_to_income": 1,
    "credit_utilisation": 1,
    "on_time_ratio_12m": -1,
    "savings_ratio": -1,
    "income_stability": -1,
}
"""More delinquencies, late payments, debt or utilisation never lower the risk; more on-time
payments, savings or income stability never raise it."""

GRADUATION_FEATURES: tuple[str, ...] = (
    *RISK_FEATURES, *(f"offer_kind_{k}" for k in PROGRAM_KINDS), "offer_payment_to_income",
)
GRADUATION_MONOTONE: dict[str, int] = {
    **{name: -sign for name, sign in RISK_MONOTONE.items()},
    "offer_payment_to_income": -1,
}
"""The mirror of the risk constraints: what raises risk never raises graduation."""


@dataclass(frozen=True)
class AssessmentResult:
    score: float
    """0-1000 points (higher: healthier); :func:`ddso.models.scorecard.score_from_probability`."""
    band: str
    probability_missed_payments: float
    reasons: list[Reason]
    """The factors that moved this customer's risk most (positive contribution: riskier)."""
    eligible_programs: list[str]
    graduation_likelihood: dict[str, float]
    """P(graduation) per eligible program, had the customer enrolled in it."""


class Assessor:
    """Scores a customer's financial health and, per eligible program, graduation likelihood."""

    def __init__(self, risk: BinaryModel, graduation: BinaryModel | None,
                 products: pd.DataFrame):
        self.risk = risk
        self.graduation = graduation
        self.programs = products[products["program_kind"].notna()].reset_index(drop=True)

    @classmethod
    def from_registry(cls, registry: ModelRegistry, products: pd.DataFrame) -> Assessor:
        risk = BinaryModel.load(registry.champion(RISK_MODEL))
        try:
            graduation = BinaryModel.load(registry.champion(GRADUATION_MODEL))
        except UserError:
            graduation = None
        return cls(risk, graduation, products)

    def assess(self, features: dict[str, float], *, reasons: int = 3,
               when: pd.Timestamp | None = None) -> AssessmentResult:
        """Assess one customer from their feature values (names of :data:`RISK_FEATURES`)."""
        missing = [f for f in self.risk.features if f not in features]
        if missing:
            raise UserError(f"assessment: feature {missing[0]!r} is missing")
        row = np.array([[features[f] for f in self.risk.features]], dtype=np.float32)
        p_bad = float(self.risk.predict(row)[0])
        points = scorecard.score_from_probability(p_bad)
        band = scorecard.band(points)
        facts = {"band": band, "debt_to_income": features.get("debt_to_income"),
                 "age": features.get("age"), "monthly_income": features.get("monthly_income")}
        eligible = self.programs[eligible_mask(self.programs, facts)]
        likelihood: dict[str, float] = {}
        if self.graduation is not None and len(eligible):
            ctx = offer_context(
                pd.DataFrame({
                    "channel": Channel.EMAIL.value, "product_id": eligible["product_id"],
                    "timestamp": when or pd.Timestamp.now(tz="UTC"),
                    "preferred_channel": Channel.EMAIL.value,
                    "birth_year": 0, "monthly_income": features["monthly_income"],
                    "debt_to_income": features["debt_to_income"],
                }),
                eligible,
            )
            grid = pd.DataFrame({f: features[f] for f in RISK_FEATURES}, index=ctx.index)
            grid = grid.join(ctx.drop(columns="age"))
            probs = self.graduation.predict(grid)
            likelihood = dict(zip(eligible["product_id"], map(float, probs), strict=True))
        return AssessmentResult(
            score=points,
            band=band.value,
            probability_missed_payments=p_bad,
            reasons=self.risk.reasons(row[0], reasons),
            eligible_programs=eligible["product_id"].tolist(),
            graduation_likelihood=likelihood,
        )
