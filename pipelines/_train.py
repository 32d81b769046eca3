"""What the training jobs share: reading a dataset's events and profiles, point-in-time
features for a spine, the XGBoost parameters, and the fit -> register -> gate -> report tail.

Each job (``train_propensity``, ``train_churn``, ``train_conversion``, ``train_assessment``)
only builds its spine (rows, times, labels, context columns) and names its features.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ddso.data.dataset import Dataset
from ddso.features.labels import EVENT_COLUMNS
from ddso.features.sets import FEATURE_SET, FEATURE_SET_VERSION
from ddso.features.training_sets import point_in_time
from ddso.models.binary import BinaryModel, fingerprint, fit_binary, register_and_gate, time_split
from ddso.models.registry import ModelRegistry, ModelVersion
from ddso.stores.offline import OfflineStore

PARAMS: dict[str, Any] = {
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.05,
    "min_child_weight": 5.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "reg_lambda": 5.0,
    "nthread": 1,
    "seed": 0,
}
"""Shallow, regularised trees; early stopping on the valid period picks the number of rounds."""


def window(data: str | Path) -> tuple[datetime, datetime]:
    """The dataset's observation window (start, end), UTC."""
    manifest = Dataset(data).manifest
    start = datetime.fromisoformat(manifest["start"]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(manifest["end"]).replace(tzinfo=UTC)
    return start, end


def events(data: str | Path, types: Sequence[str]) -> pd.DataFrame:
    """Events of the given types (the columns the label functions read)."""
    return OfflineStore(data).read(columns=EVENT_COLUMNS, types=types).to_pandas()


def with_features(spine: pd.DataFrame, data: str | Path,
                  features: Sequence[str] | None = None) -> pd.DataFrame:
    """The spine with customer features as of each row's timestamp (point in time)."""
    profiles = Dataset(data).path / "warehouse" / "financial_profiles"
    import pyarrow.parquet as pq

    return point_in_time(spine, OfflineStore(data), features, pq.read_table(profiles))


def fit_register(
    name: str,
    frame: pd.DataFrame,
    features: list[str],
    label: str,
    *,
    registry: str,
    storage: str,
    data: str,
    describe: str,
    num_workers: int = 1,
    monotone: Mapping[str, int] | None = None,
    params: Mapping[str, Any] | None = None,
    valid_share: float = 0.2,
    test_share: float = 0.2,
    metrics_json: str | None = None,
) -> tuple[BinaryModel, ModelVersion]:
    """Time split -> Ray Train fit -> calibrate -> report -> register -> gate; print a summary."""
    split = time_split(frame, "timestamp", valid_share, test_share)
    model = fit_binary(
        split, features, label, {**PARAMS, **(params or {})},
        storage_path=storage, monotone=monotone, num_workers=num_workers, run_name=name,
    )
    version, outcome = register_and_gate(
        ModelRegistry(registry), name, model, split.test, label,
        {
            "label": describe,
            "feature_set": f"{FEATURE_SET}:v{FEATURE_SET_VERSION}",
            "split": split.describe(),
            "monotone": dict(monotone or {}),
            "data": str(Path(data).resolve()),
            "data_fingerprint": fingerprint(frame[[*features, label]]),
            "params": {**PARAMS, **(params or {})},
            "trainer": f"ray.train.xgboost.XGBoostTrainer(num_workers={num_workers})",
        },
    )
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in model.metrics.items()
             if k.startswith("test_") and not k.startswith("test_uncalibrated")}
    print(f"{name}: {version.name}:{version.version} "
          f"({ModelRegistry(registry).stage(name, version.version)}) {outcome}")
    print(f"{name}: test period from {split.test_from:%Y-%m-%d}: {json.dumps(shown)}")
    if metrics_json:
        Path(metrics_json).parent.mkdir(parents=True, exist_ok=True)
        Path(metrics_json).write_text(json.dumps(
            {"model": name, "version": version.version, **split.describe(), **model.metrics},
            indent=2))
    return model, version
