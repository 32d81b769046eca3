"""Bring your own data: a binary propensity model on any tabular file.

``ddso train propensity --data FILE.csv|parquet --target COLUMN [--id C] [--time C]`` reads the
file, turns the target (yes/no, true/false, 1/0, y/n) into 0/1, uses every other column as a
feature (numbers as they are, anything else as a categorical), validates and trains XGBoost,
registers the model and writes its metrics. Validation: with ``--time``, the newest 20% of
rows by time are the holdout (no row from the future trains the model); without it, 5-fold
stratified cross-validation. The final model is refit on all rows.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from ddso.errors import DataFileError, UserError
from ddso.models.registry import ModelRegistry, ModelVersion

_TRUE = {"1", "yes", "y", "true", "t"}
_FALSE = {"0", "no", "n", "false", "f"}
PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.05,
    "min_child_weight": 2.0,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "max_cat_to_onehot": 8,
    "nthread": 2,
    "seed": 0,
}


@dataclass(frozen=True)
class TabularResult:
    version: ModelVersion
    metrics: dict[str, float | int | str]


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; unreadable files are named with the reason."""
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataFileError(f"{path}: not a readable {path.suffix[1:]} file ({first})") from None
    raise DataFileError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")


def binary_target(column: pd.Series, name: str) -> np.ndarray:
    """yes/no, true/false, y/n or 1/0 (any case) as 0/1; anything else is an error."""
    if column.isna().any():
        raise UserError(f"target column {name!r} has {int(column.isna().sum())} empty values")
    text = column.astype(str).str.strip().str.lower()
    text = text.where(~text.isin({"1.0", "0.0"}), text.str[0])
    bad = sorted(set(text) - _TRUE - _FALSE)
    if bad:
        raise UserError(
            f"target column {name!r} must be yes/no, true/false or 1/0; found {bad[:5]}"
        )
    y = text.isin(_TRUE).to_numpy().astype(int)
    if y.min() == y.max():
        raise UserError(f"target column {name!r} is constant ({y[0]}): nothing to learn")
    return y


def features(frame: pd.DataFrame, drop: list[str]) -> pd.DataFrame:
    """Every column but ``drop``: numbers as float, the rest as pandas categoricals."""
    x = frame.drop(columns=drop)
    if x.shape[1] == 0:
        raise UserError("the file has no feature columns besides the target, id and time")
    for col in x.columns:
        x[col] = (
            x[col].astype(float)
            if pd.api.types.is_numeric_dtype(x[col])
            else (x[col].astype(str).astype("category"))
        )
    return x


def _fit(x: pd.DataFrame, y: np.ndarray, rounds: int) -> xgb.Booster:
    return xgb.train(PARAMS, xgb.DMatrix(x, y, enable_categorical=True), rounds)


def _rounds(x: pd.DataFrame, y: np.ndarray, valid: np.ndarray) -> int:
    """Boosting rounds chosen by early stopping on an inner split of the training rows."""
    dtr = xgb.DMatrix(x[~valid], y[~valid], enable_categorical=True)
    dva = xgb.DMatrix(x[valid], y[valid], enable_categorical=True)
    booster = xgb.train(
        PARAMS, dtr, 1000, evals=[(dva, "valid")], early_stopping_rounds=40, verbose_eval=False
    )
    return int(booster.best_iteration) + 1


def train_tabular(
    data: Path,
    target: str,
    registry: str,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    name: str = "propensity_custom",
) -> TabularResult:
    frame = read_table(data)
    for role, col in (("target", target), ("--id", id_col), ("--time", time_col)):
        if col is not None and col not in frame.columns:
            raise UserError(
                f"{data}: no {role} column {col!r}; columns: {', '.join(frame.columns)}"
            )
    y = binary_target(frame[target], target)
    x = features(frame, [c for c in (target, id_col, time_col) if c])
    rng = np.random.default_rng(0)
    if time_col is not None:
        when = pd.to_datetime(frame[time_col], utc=True, errors="coerce")
        if when.isna().any():
            raise UserError(f"--time column {time_col!r} has values that are not dates/times")
        order = np.argsort(when.to_numpy(), kind="stable")
        holdout = np.zeros(len(frame), bool)
        holdout[order[int(len(frame) * 0.8) :]] = True
        if y[holdout].min() == y[holdout].max():
            raise UserError("the newest 20% of rows have one class only: no AUC to report")
        inner = rng.random(len(frame)) < 0.2
        rounds = _rounds(x[~holdout], y[~holdout], inner[~holdout])
        pred = _fit(x[~holdout], y[~holdout], rounds).predict(
            xgb.DMatrix(x[holdout], enable_categorical=True)
        )
        auc, scheme = roc_auc_score(y[holdout], pred), "time split: newest 20% held out"
    else:
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        oof = np.zeros(len(frame))
        rounds = _rounds(x, y, rng.random(len(frame)) < 0.2)
        for tr, te in folds.split(x, y):
            oof[te] = _fit(x.iloc[tr], y[tr], rounds).predict(
                xgb.DMatrix(x.iloc[te], enable_categorical=True)
            )
        auc, scheme = roc_auc_score(y, oof), "5-fold stratified cross-validation"
    booster = _fit(x, y, rounds)
    metrics: dict[str, float | int | str] = {
        "auc": round(float(auc), 4),
        "validation": scheme,
        "rows": len(frame),
        "positive_rate": round(float(y.mean()), 4),
        "features": x.shape[1],
        "rounds": rounds,
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.ubj"
        booster.save_model(model)
        version = ModelRegistry(registry).register(
            name,
            {"model.ubj": model},
            {
                "metrics": metrics,
                "features": list(x.columns),
                "label": target,
                "data": str(data.resolve()),
                "params": PARAMS,
                "categories": {
                    c: list(x[c].cat.categories)
                    for c in x.columns
                    if isinstance(x[c].dtype, pd.CategoricalDtype)
                },
            },
        )
    return TabularResult(version, metrics)


def write_metrics(result: TabularResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**result.metrics, "model": f"{result.version.name}:{result.version.version}"}
    path.write_text(json.dumps(body, indent=2) + "\n")
