"""The lifecycle every binary model of the platform shares: split, fit, calibrate, report, gate.

Assessment, conversion propensity and churn differ in their rows and labels, not in how they
are trained, so one path serves all three:

1. :func:`time_split` orders rows by their time and cuts them into train (oldest), valid and
   test (newest): a model is always judged on a period after the one it learned from.
2. :func:`fit_binary` fits XGBoost with Ray Train (:func:`ddso.models.xgb.fit_with_ray_train`)
   with early stopping on the valid rows and optional monotonic constraints, fits a
   :class:`~ddso.models.calibration.Calibrator` on the same valid rows (the booster never
   trained on them), and reports :func:`~ddso.models.evaluation.binary_report` on the test rows,
   calibrated and raw, and on the valid rows.
3. :meth:`BinaryModel.save` / :meth:`BinaryModel.load` keep the booster (``model.ubj``) and the
   calibrator (``calibration.json``) together; :func:`register_and_gate` registers a version and
   promotes it only if it is not worse than the champion *on the candidate's test rows* (the
   champion is re-scored on them, so retrains on new data compare like with like). Each
   version also keeps its test rows' labels with raw and calibrated scores
   (``test_predictions.parquet``), so ROC and calibration curves can be drawn from the
   registry alone (``ddso report``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from ddso.errors import UserError
from ddso.models.calibration import Calibrator, fit_calibrator
from ddso.models.evaluation import binary_report
from ddso.models.reasons import Reason, top_reasons
from ddso.models.registry import ModelRegistry, ModelVersion, PromotionRefused
from ddso.models.xgb import MODEL_FILE, fit_with_ray_train
from ddso.monitoring import DRIFT_REFERENCE_FILE, DriftReference

CALIBRATION_FILE = "calibration.json"
TEST_PREDICTIONS_FILE = "test_predictions.parquet"
GATE_METRIC = "test_auc"


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    valid_from: pd.Timestamp
    """Rows at or after this time (and before ``test_from``) are validation rows."""
    test_from: pd.Timestamp

    def describe(self) -> dict[str, Any]:
        return {
            "rows_train": len(self.train),
            "rows_valid": len(self.valid),
            "rows_test": len(self.test),
            "valid_from": self.valid_from.isoformat(),
            "test_from": self.test_from.isoformat(),
        }


def time_split(
    frame: pd.DataFrame, time_col: str, valid_share: float = 0.2, test_share: float = 0.2
) -> TimeSplit:
    """Cut ``frame`` by ``time_col`` into train < valid < test, about the given row shares.

    The cut points are times, so rows with equal times (one cutoff of a spine) always land on
    the same side; each side must end up non-empty.
    """
    if time_col not in frame.columns:
        raise UserError(f"time split: column {time_col!r} is missing")
    if not (0 < valid_share < 1 and 0 < test_share < 1 and valid_share + test_share < 1):
        raise UserError("time split: valid_share and test_share must be in (0, 1), sum < 1")
    times = pd.to_datetime(frame[time_col], utc=True)
    if times.isna().any():
        raise UserError(f"time split: column {time_col!r} has missing times")
    distinct = times.drop_duplicates().sort_values(ignore_index=True)
    if len(distinct) <= 50:
        # Few distinct times (cutoffs of a spine): whole cutoffs go to each side.
        k = len(distinct)
        n_test = max(1, round(k * test_share))
        n_valid = max(1, round(k * valid_share))
        test_from = distinct.iloc[max(0, k - n_test)]
        valid_from = distinct.iloc[max(0, k - n_test - n_valid)]
    else:
        ordered = times.sort_values(ignore_index=True)
        n = len(ordered)
        test_from = ordered.iloc[min(n - 1, int(n * (1 - test_share)))]
        valid_from = ordered.iloc[min(n - 1, int(n * (1 - test_share - valid_share)))]
    train = frame[times < valid_from]
    valid = frame[(times >= valid_from) & (times < test_from)]
    test = frame[times >= test_from]
    empty = [name for name, part in (("train", train), ("valid", valid), ("test", test))
             if part.empty]
    if empty:
        raise UserError(
            f"time split on {time_col!r}: the {empty[0]} side is empty ({len(frame)} rows, "
            f"{len(distinct)} "
            "distinct times); give more rows spread over more distinct times"
        )
    return TimeSplit(train, valid, test, valid_from, test_from)


def monotone_constraints(features: list[str], monotone: Mapping[str, int]) -> str:
    """XGBoost's ``monotone_constraints`` string for ``features`` (unnamed features: 0)."""
    unknown = [name for name in monotone if name not in features]
    if unknown:
        raise UserError(f"monotone constraint on {unknown[0]!r}, which is not a model feature")
    return "(" + ",".join(str(int(monotone.get(f, 0))) for f in features) + ")"


@dataclass
class BinaryModel:
    """A booster, its calibrator and the feature order, with the report of its fit."""

    booster: xgb.Booster
    calibrator: Calibrator
    features: list[str]
    metrics: dict[str, float | int]
    drift_reference: DriftReference | None = None
    """The training rows' feature distributions, saved for drift monitoring when serving."""

    def raw(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        values = X[self.features].to_numpy(np.float32) if isinstance(X, pd.DataFrame) else X
        return self.booster.inplace_predict(np.asarray(values, np.float32))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probabilities, one per row of ``X`` (a frame or rows in feature order)."""
        return self.calibrator.apply(self.raw(X))

    def reasons(self, row: np.ndarray, k: int = 3) -> list[Reason]:
        """The top ``k`` factors (per-prediction contributions) behind one row's score."""
        row = np.asarray(row, np.float32).reshape(1, -1)
        contrib = self.booster.predict(
            xgb.DMatrix(row, feature_names=self.features), pred_contribs=True
        )[0]
        return top_reasons(contrib, self.features, row[0], k)

    def save(self, folder: str | Path) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(folder / MODEL_FILE)
        (folder / CALIBRATION_FILE).write_text(json.dumps(self.calibrator.to_dict()))
        files = {MODEL_FILE: folder / MODEL_FILE, CALIBRATION_FILE: folder / CALIBRATION_FILE}
        if self.drift_reference is not None:
            files[DRIFT_REFERENCE_FILE] = self.drift_reference.save(folder / DRIFT_REFERENCE_FILE)
        return files

    @classmethod
    def load(cls, version: ModelVersion) -> BinaryModel:
        booster = xgb.Booster()
        booster.load_model(str(version.artifact(MODEL_FILE)))
        booster.set_param({"nthread": 1})
        return cls(booster, load_calibrator(version), list(version.metadata["features"]),
                   dict(version.metadata.get("metrics", {})))


def load_calibrator(version: ModelVersion) -> Calibrator:
    """The version's calibrator; the identity for versions registered without one."""
    if CALIBRATION_FILE not in version.metadata.get("artifacts", {}):
        return Calibrator("identity")
    return Calibrator.from_dict(json.loads(version.artifact(CALIBRATION_FILE).read_text()))


def _labels(frame: pd.DataFrame, label: str) -> np.ndarray:
    y = frame[label].to_numpy(dtype=float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise UserError(f"label column {label!r} must be 0/1")
    return y


def fit_binary(
    split: TimeSplit,
    features: list[str],
    label: str,
    params: Mapping[str, Any],
    *,
    storage_path: str | Path,
    monotone: Mapping[str, int] | None = None,
    num_workers: int = 1,
    num_boost_round: int = 400,
    early_stopping_rounds: int = 30,
    calibration: str = "auto",
    run_name: str = "binary",
) -> BinaryModel:
    """Fit, calibrate and report one binary model on a time split (see the module doc)."""
    for name, part in (("train", split.train), ("valid", split.valid)):
        y = _labels(part, label)
        if y.min() == y.max():
            raise UserError(
                f"{run_name}: the {name} rows have only label {int(y[0])} ({len(y)} rows); "
                "both classes are needed: use more customers or a longer window"
            )
    full = {"objective": "binary:logistic", "eval_metric": ["auc", "logloss"], **params}
    if monotone:
        full["monotone_constraints"] = monotone_constraints(features, monotone)
    booster = fit_with_ray_train(
        split.train, split.valid, features, label, full,
        storage_path=storage_path, num_workers=num_workers, num_boost_round=num_boost_round,
        early_stopping_rounds=early_stopping_rounds, run_name=run_name,
    )
    booster.set_param({"nthread": 1})
    model = BinaryModel(booster, Calibrator("identity"), list(features), {})
    y_valid = _labels(split.valid, label)
    raw_valid = model.raw(split.valid)
    model.calibrator = fit_calibrator(y_valid, raw_valid, calibration)
    y_test = _labels(split.test, label)
    raw_test = model.raw(split.test)
    metrics: dict[str, float | int] = {}
    for prefix, y, p in (
        ("test", y_test, model.calibrator.apply(raw_test)),
        ("test_uncalibrated", y_test, raw_test),
        ("valid", y_valid, model.calibrator.apply(raw_valid)),
    ):
        metrics.update({f"{prefix}_{k}": v for k, v in binary_report(y, p).items()})
    metrics["rows_train"] = len(split.train)
    metrics["positive_rate_train"] = float(_labels(split.train, label).mean())
    metrics["trees"] = int(booster.num_boosted_rounds())
    model.metrics = metrics
    model.drift_reference = DriftReference.fit(split.train, features)
    return model


def fingerprint(frame: pd.DataFrame) -> str:
    """A short content hash of a frame (rows and values), for lineage and holdout identity."""
    return hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    ).hexdigest()[:16]


def holdout_predictions(model: BinaryModel, test: pd.DataFrame, label: str) -> pd.DataFrame:
    """``label``, ``raw`` and ``calibrated`` score of every test row, in the rows' order."""
    raw = model.raw(test).astype(float)
    return pd.DataFrame({"label": _labels(test, label).astype(np.int8), "raw": raw,
                         "calibrated": model.calibrator.apply(raw).astype(float)})


def register_and_gate(
    registry: ModelRegistry,
    name: str,
    model: BinaryModel,
    test: pd.DataFrame,
    label: str,
    metadata: Mapping[str, Any],
) -> tuple[ModelVersion, str]:
    """Register ``model`` as a candidate and promote it if it passes the gate.

    The gate metric is ROC-AUC on the candidate's test rows; the champion (if its features
    are available in ``test``) is re-scored on exactly those rows. Returns the version and a
    line saying what happened.
    """
    with tempfile.TemporaryDirectory() as tmp:
        files = model.save(tmp)
        files[TEST_PREDICTIONS_FILE] = Path(tmp) / TEST_PREDICTIONS_FILE
        holdout_predictions(model, test, label).to_parquet(files[TEST_PREDICTIONS_FILE],
                                                           index=False)
        version = registry.register(
            name,
            files,
            {
                **metadata,
                "metrics": model.metrics,
                "features": model.features,
                "calibration": model.calibrator.method,
                "holdout": fingerprint(test[[*model.features, label]]),
            },
        )
    try:
        current = registry.champion(name)
    except UserError:  # no champion yet
        current = None
    if current is None or current.version == version.version:
        registry.promote(name, version.version)
        return version, f"{name} {version.version} is the first champion"
    missing = [f for f in current.metadata.get("features", []) if f not in test.columns]
    if missing:
        registry.promote(name, version.version)
        return version, (f"{name} {version.version} promoted: champion {current.version} "
                         f"used feature {missing[0]!r}, which the new data lacks")
    champion = BinaryModel.load(current)
    y = _labels(test, label)
    champion_score = binary_report(y, champion.predict(test))["auc"]
    try:
        registry.promote(name, version.version, metric=GATE_METRIC,
                         champion_score=champion_score)
    except PromotionRefused as refused:
        return version, str(refused)
    return version, (f"{name} {version.version} promoted: {GATE_METRIC} "
                     f"{model.metrics[GATE_METRIC]:.4f} vs champion {current.version} "
                     f"{champion_score:.4f} on the same test rows")
