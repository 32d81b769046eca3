"""``ddso bench train_scale``: Ray Train XGBoost vs plain xgboost, and single-row scoring.

The same data (``rows`` x ``features`` float32, a known logistic signal), the same parameters
and the same number of rounds (no early stopping, so both do identical work) on the same CPUs:
plain ``xgboost.train`` with ``nthread = cores`` against
:func:`ddso.models.xgb.fit_with_ray_train` with ``workers`` workers of ``cores / workers``
threads each. ``train_s_ray`` includes what a user waits for: putting the data in the object
store, worker start-up, the fit and the checkpoint (Ray itself is started before).
Scoring: one row at a time through :class:`ddso.models.xgb.XGBScorer` (in-place prediction),
``score_calls`` calls over validation rows.

Options: rows (1000000), features (50), rounds (100), workers (2), score_calls (5000).
``ddso bench models`` reports the same metrics through :func:`measure`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from ddso.config import load_settings
from ddso.models.xgb import XGBScorer, fit_with_ray_train
from ddso.runtime import init_ray


def _data(rows: int, features: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features) / np.sqrt(features)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ w * 3)))).astype(np.float32)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame["label"] = y
    return frame


def measure(
    rows: int = 1_000_000,
    n_features: int = 50,
    rounds: int = 100,
    workers: int = 2,
    calls: int = 5000,
) -> dict[str, float | int]:
    """Time both fits and the scorer; keys are prefixed ``train_`` / ``score_``."""
    cores = os.cpu_count() or 1
    # One draw, then split: validation rows must carry the same signal as training rows.
    data = _data(rows + max(rows // 10, 1000), n_features)
    frame, valid = data.iloc[:rows], data.iloc[rows:].reset_index(drop=True)
    cols = [c for c in frame.columns if c != "label"]
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": 6,
        "eta": 0.1,
        "eval_metric": "logloss",
    }

    t0 = time.perf_counter()
    dtrain = xgb.DMatrix(frame[cols], frame["label"])
    plain = xgb.train({**params, "nthread": cores}, dtrain, rounds)
    train_s_plain = time.perf_counter() - t0

    init_ray(load_settings())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ray_booster = fit_with_ray_train(
            frame,
            valid,
            cols,
            "label",
            {**params, "nthread": max(cores // workers, 1)},
            storage_path=tmp,
            num_workers=workers,
            num_boost_round=rounds,
            early_stopping_rounds=rounds + 1,
            run_name="train_scale",
        )
        train_s_ray = time.perf_counter() - t0
        model = Path(tmp) / "model.ubj"
        plain.save_model(model)
        scorer = XGBScorer(model, cols)
    sample = valid[cols].to_numpy(dtype=np.float32)
    lat = np.empty(calls)
    for i in range(calls):
        row = sample[i % len(sample)][None, :]
        t = time.perf_counter_ns()
        scorer.predict(row)
        lat[i] = (time.perf_counter_ns() - t) / 1000
    auc_gap = _auc(valid, cols, plain) - _auc(valid, cols, ray_booster)
    return {
        "train_rows": rows,
        "train_features": n_features,
        "train_rounds": rounds,
        "train_ray_workers": workers,
        "train_s_plain": round(train_s_plain, 2),
        "train_s_ray": round(train_s_ray, 2),
        "train_ratio": round(train_s_ray / train_s_plain, 2),
        "train_valid_auc_plain_minus_ray": round(auc_gap, 4),
        "score_calls": calls,
        "score_p50_us": round(float(np.percentile(lat, 50)), 1),
        "score_p99_us": round(float(np.percentile(lat, 99)), 1),
    }


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    return measure(
        rows=int(options.get("rows", 1_000_000)),
        n_features=int(options.get("features", 50)),
        rounds=int(options.get("rounds", 100)),
        workers=int(options.get("workers", 2)),
        calls=int(options.get("score_calls", 5000)),
    )


def _auc(valid: pd.DataFrame, cols: list[str], booster: xgb.Booster) -> float:
    from sklearn.metrics import roc_auc_score

    pred = booster.inplace_predict(valid[cols].to_numpy(dtype=np.float32))
    return float(roc_auc_score(valid["label"], pred))
