"""Real-data model results: German Credit assessment AUC and CDNOW churn / repeat forecasts.

German Credit: 5-fold stratified CV (``seed``) over the same folds for three models, each
fitted on the training folds only (early stopping uses an inner split of the training folds):

- ``german_auc``: :func:`ddso.models.assessment.fit_assessment` (monotone, small trees);
- ``german_auc_xgb_plain``: XGBoost with default-ish parameters (depth 6, eta 0.3, 100 rounds,
  native categoricals), no constraints, no early stopping;
- ``german_auc_logreg``: scikit-learn Pipeline of one-hot + standard scaling + L2 logistic
  regression (C = 1).

CDNOW (standard split, calibration weeks 1-39, holdout weeks 40-78), churn = no repeat
purchase in the holdout. Every customer gets an out-of-fold prediction from 5-fold
cross-fitting over customers of an XGBoost classifier (churn) and an XGBoost Poisson
regressor (holdout count) on calibration-period features only. BG/NBD is fitted once on the
calibration summaries of all customers (it never sees the holdout, so nothing leaks); its
churn score is ``-E[holdout transactions]`` (``cdnow_churn_auc_bgnbd``; the ``1 - P(alive)``
score is reported as ``cdnow_churn_auc_bgnbd_palive``: it is well below 0.5 because BG/NBD
gives P(alive) = 1 to every customer without a repeat purchase, the likeliest churners).
Forecast errors are ``|sum(forecast) - sum(actual)| / sum(actual)`` of holdout repeat
transactions.

Training scale and scoring latency (synthetic data): :func:`benchmarks.train_scale.measure`,
the same figures as ``ddso bench train_scale``: ``train_s_ray`` vs ``train_s_plain`` and their
``train_ratio`` at ``train_rows`` x ``train_features`` (target: ratio under 1.5 at 1M rows),
and single-row in-place scoring ``score_p50_us`` / ``score_p99_us`` (target: p99 under 200 us).

Recommenders (synthetic data, time-based split): :func:`benchmarks.recommend.run`, the same
figures as ``ddso bench recommend`` under a ``recommend_`` prefix: HR@10, NDCG@10, MAP@10,
coverage, fit time and single-request scoring p50 / p99 of popularity, item-CF, ALS, NCF,
Wide & Deep, the text-embedding and item2vec recommenders, the hybrid and the hybrid with the
deep models, all on one split, and ``recommend_best_deep_ndcg10`` against
``recommend_best_non_deep_ndcg10``. Its options are passed with the same prefix
(``recommend_customers``, default 5000; ``recommend_days``, ``recommend_test_days``, ...).

Options: ``seed`` (0), ``folds`` (5), ``cdnow_customers`` (subsample size; default all),
``german_rounds`` (most boosting rounds of the assessment model; 1500),
``train_rows`` (1000000), ``train_features`` (50), ``train_rounds`` (100), ``train_workers``
(2), ``score_calls`` (5000), ``skip`` (comma list of ``german``, ``cdnow``, ``train``,
``recommend``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from benchmarks import recommend, train_scale
from ddso.data.real import (
    GERMAN_CREDIT_CATEGORICAL,
    GERMAN_CREDIT_NUMERIC,
    cdnow_calibration_holdout,
    load_cdnow,
    load_german_credit,
)
from ddso.models.assessment import (
    NUM_BOOST_ROUND,
    fit_assessment,
    predict_bad_proba,
    prepare_assessment,
)
from ddso.models.bgnbd import BetaGeoFitter

PLAIN_PARAMS: dict[str, Any] = {"objective": "binary:logistic", "tree_method": "hist",
                                "max_depth": 6, "learning_rate": 0.3, "nthread": 2}
CDNOW_PARAMS: dict[str, Any] = {"tree_method": "hist", "max_depth": 4, "learning_rate": 0.05,
                                "min_child_weight": 20.0, "subsample": 0.8,
                                "colsample_bytree": 0.8, "reg_lambda": 5.0, "nthread": 2}


def _german(seed: int, folds: int, rounds: int) -> dict[str, float | int]:
    df = load_german_credit()
    y = df["bad"].to_numpy()
    X = prepare_assessment(df)
    raw = df.drop(columns="bad")
    logreg = Pipeline([
        ("columns", ColumnTransformer([
            ("num", StandardScaler(), list(GERMAN_CREDIT_NUMERIC)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(GERMAN_CREDIT_CATEGORICAL)),
        ])),
        ("model", LogisticRegression(C=1.0, max_iter=2000)),
    ])
    oof = {name: np.zeros(len(y)) for name in ("assess", "plain", "logreg")}
    aucs: dict[str, list[float]] = {name: [] for name in oof}
    for k, (tr, te) in enumerate(StratifiedKFold(folds, shuffle=True,
                                                 random_state=seed).split(X, y)):
        model = fit_assessment(X.iloc[tr], y[tr], seed=seed + k, num_boost_round=rounds)
        oof["assess"][te] = predict_bad_proba(model, X.iloc[te])
        plain = xgb.train({**PLAIN_PARAMS, "seed": seed},
                          xgb.DMatrix(raw.iloc[tr], label=y[tr], enable_categorical=True),
                          num_boost_round=100)
        oof["plain"][te] = plain.predict(xgb.DMatrix(raw.iloc[te], enable_categorical=True))
        oof["logreg"][te] = logreg.fit(raw.iloc[tr], y[tr]).predict_proba(raw.iloc[te])[:, 1]
        for name in oof:
            aucs[name].append(roc_auc_score(y[te], oof[name][te]))
    names = {"assess": "german_auc", "plain": "german_auc_xgb_plain",
             "logreg": "german_auc_logreg"}
    out: dict[str, float | int] = {"german_folds": folds, "german_rows": len(y)}
    for name, key in names.items():
        out[key] = round(float(np.mean(aucs[name])), 4)
        out[f"{key}_fold_sd"] = round(float(np.std(aucs[name])), 4)
        out[f"{key}_pooled"] = round(float(roc_auc_score(y, oof[name])), 4)
    return out


def cdnow_features(purchases: pd.DataFrame, summary: pd.DataFrame,
                   calibration_weeks: int = 39) -> pd.DataFrame:
    """Per-customer features from calibration-period purchases only (index ``customer_id``)."""
    start = purchases["date"].min().normalize()
    end = start + pd.Timedelta(weeks=calibration_weeks)
    cal = purchases[(purchases["date"] < end) & purchases["customer_id"].isin(summary.index)]
    cal = cal.sort_values(["customer_id", "date"], kind="stable")
    groups = cal.groupby("customer_id")
    first_date = groups["date"].min()
    on_first = cal[cal["date"] == cal["customer_id"].map(first_date)].groupby("customer_id")
    feats = summary[["frequency_cal", "recency_cal", "T_cal", "monetary_value_cal"]].copy()
    feats["recency_gap"] = feats["T_cal"] - feats["recency_cal"]
    feats["first_week"] = (first_date - start).dt.days / 7.0
    feats["cds_total"] = groups["cds"].sum()
    feats["amount_total"] = groups["amount"].sum()
    feats["amount_max"] = groups["amount"].max()
    feats["records"] = groups.size()
    feats["first_amount"] = on_first["amount"].sum()
    feats["first_cds"] = on_first["cds"].sum()
    feats["amount_per_cd"] = feats["amount_total"] / feats["cds_total"].clip(lower=1)
    feats["rate"] = feats["frequency_cal"] / feats["T_cal"].clip(lower=1.0 / 7)
    return feats.astype("float64")


def _xgb_oof(X: pd.DataFrame, y: np.ndarray, objective: str, seed: int,
             folds: int) -> np.ndarray:
    """Out-of-fold predictions; rounds chosen by early stopping on an inner split."""
    params = {**CDNOW_PARAMS, "objective": objective, "seed": seed}
    oof = np.zeros(len(y))
    for k, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(X)):
        fit_idx, stop_idx = train_test_split(tr, test_size=0.2, random_state=seed + k)
        dfit = xgb.DMatrix(X.iloc[fit_idx], label=y[fit_idx])
        dstop = xgb.DMatrix(X.iloc[stop_idx], label=y[stop_idx])
        model = xgb.train(params, dfit, num_boost_round=1000, evals=[(dstop, "stop")],
                          early_stopping_rounds=50, verbose_eval=False)
        oof[te] = model.predict(xgb.DMatrix(X.iloc[te]),
                                iteration_range=(0, model.best_iteration + 1))
    return oof


def _cdnow(seed: int, folds: int, customers: int | None) -> dict[str, float | int]:
    purchases = load_cdnow()
    summary = cdnow_calibration_holdout(purchases)
    if customers is not None and customers < len(summary):
        summary = summary.sample(customers, random_state=seed).sort_index()
    X = cdnow_features(purchases, summary)
    count = summary["frequency_holdout"].to_numpy(dtype="float64")
    churn = (count == 0).astype("float64")
    actual = float(count.sum())
    began = time.perf_counter()
    churn_oof = _xgb_oof(X, churn, "binary:logistic", seed, folds)
    count_oof = _xgb_oof(X, count, "count:poisson", seed, folds)
    xgb_s = time.perf_counter() - began
    began = time.perf_counter()
    bg = BetaGeoFitter().fit(summary["frequency_cal"], summary["recency_cal"], summary["T_cal"])
    args = (summary["frequency_cal"], summary["recency_cal"], summary["T_cal"])
    expected = bg.expected_transactions(summary["duration_holdout"], *args)
    p_alive = bg.p_alive(*args)
    bg_s = time.perf_counter() - began
    r, alpha, a, b = bg.params_
    return {
        "cdnow_customers": len(summary),
        "cdnow_churn_rate": round(float(churn.mean()), 4),
        "cdnow_churn_auc": round(float(roc_auc_score(churn, churn_oof)), 4),
        "cdnow_churn_auc_bgnbd": round(float(roc_auc_score(churn, -expected)), 4),
        "cdnow_churn_auc_bgnbd_palive": round(float(roc_auc_score(churn, 1 - p_alive)), 4),
        "cdnow_repeat_actual": int(actual),
        "cdnow_repeat_forecast": round(float(count_oof.sum()), 1),
        "cdnow_repeat_forecast_bgnbd": round(float(expected.sum()), 1),
        "cdnow_repeat_forecast_err": round(abs(float(count_oof.sum()) - actual) / actual, 4),
        "cdnow_repeat_forecast_err_bgnbd": round(abs(float(expected.sum()) - actual) / actual,
                                                 4),
        "cdnow_bgnbd_r": round(r, 4), "cdnow_bgnbd_alpha": round(alpha, 4),
        "cdnow_bgnbd_a": round(a, 4), "cdnow_bgnbd_b": round(b, 4),
        "cdnow_xgb_wall_s": round(xgb_s, 3), "cdnow_bgnbd_wall_s": round(bg_s, 3),
    }


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Run the German Credit, CDNOW, training-scale and recommender parts (module docstring);
    flat metrics."""
    seed = int(options.get("seed", 0))
    folds = int(options.get("folds", 5))
    customers = int(options["cdnow_customers"]) if options.get("cdnow_customers") else None
    skip = {s.strip() for s in options.get("skip", "").split(",") if s.strip()}
    out: dict[str, float | int | str] = {"seed": seed}
    if "german" not in skip:
        began = time.perf_counter()
        out.update(_german(seed, folds, int(options.get("german_rounds", NUM_BOOST_ROUND))))
        out["german_wall_s"] = round(time.perf_counter() - began, 3)
    if "cdnow" not in skip:
        began = time.perf_counter()
        out.update(_cdnow(seed, folds, customers))
        out["cdnow_wall_s"] = round(time.perf_counter() - began, 3)
    if "train" not in skip:
        out.update(train_scale.measure(
            rows=int(options.get("train_rows", 1_000_000)),
            n_features=int(options.get("train_features", 50)),
            rounds=int(options.get("train_rounds", 100)),
            workers=int(options.get("train_workers", 2)),
            calls=int(options.get("score_calls", 5000)),
        ))
    if "recommend" not in skip:
        prefix = "recommend_"
        chosen = {k.removeprefix(prefix): v for k, v in options.items() if k.startswith(prefix)}
        figures = recommend.run({"customers": "5000", "seed": str(seed), **chosen})
        out.update({prefix + k: v for k, v in figures.items()})
    return out
