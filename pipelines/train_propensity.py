"""Train the purchase-propensity model with Ray Train XGBoost and register it.

Label: the customer buys within ``horizon_days`` after the cutoff; features: everything known
at the cutoff (point in time: :mod:`ddso.features` drops later events). The cutoff is the end
of the observation window minus the horizon, so labels are complete. Customers are split into
train and validation by a stable hash of their id; the validation set drives early stopping
and the reported metrics. The model is registered as ``propensity``; it becomes the champion through
the registry's gate (not worse than the champion on the same holdout).

    python -m pipelines.train_propensity --data .ddso/data --registry .ddso/registry
    ray job submit --working-dir . -- \
        python -m pipelines.train_propensity --data ... --registry ...
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from ddso.config import load_settings
from ddso.features.sets import CUSTOMER_FEATURES, FEATURE_SET, FEATURE_SET_VERSION
from ddso.models.registry import ModelRegistry, ModelVersion, PromotionRefused
from ddso.models.xgb import fit_with_ray_train
from ddso.runtime import init_ray
from pipelines._cli import parse_args
from pipelines.featurize import customer_features, observation_end

MODEL_NAME = "propensity"
LABEL = "label"


@dataclass
class Args:
    data: str
    """Dataset folder written by `ddso data generate`."""
    registry: str
    """Model registry folder the trained model is registered in."""
    storage: str = ".ddso/ray_results"
    """Ray Train storage folder (checkpoints)."""
    horizon_days: int = 30
    """Prediction horizon: a purchase within this many days after the cutoff is a positive."""
    num_workers: int = 1
    """Ray Train workers (data-parallel XGBoost)."""
    valid_share: float = 0.2
    """Share of customers held out for validation and early stopping."""


def purchasers(events_path: str, start: datetime, end: datetime) -> set[str]:
    """Customers with a purchase in (start, end], computed with Ray Data."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray.data

    def select(batch: pa.Table) -> pa.Table:
        mask = pc.and_(
            pc.equal(batch["type"], "purchase"),
            pc.and_(
                pc.greater(batch["event_time"], start), pc.less_equal(batch["event_time"], end)
            ),
        )
        return batch.filter(mask).select(["customer_id"])

    ds = ray.data.read_parquet(events_path, columns=["customer_id", "type", "event_time"])
    return set(ds.map_batches(select, batch_format="pyarrow").to_pandas()["customer_id"])


def in_validation(customer_ids: pd.Series, share: float) -> np.ndarray:
    """A stable split by customer id: the same customer is always on the same side."""
    buckets = customer_ids.map(lambda c: int(hashlib.sha256(c.encode()).hexdigest()[:8], 16) % 1000)
    return (buckets < share * 1000).to_numpy()


def fingerprint(frame: pd.DataFrame) -> str:
    return hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    ).hexdigest()[:16]


def main(args: Args) -> ModelVersion:
    init_ray(load_settings())
    events = str(Path(args.data) / "events")
    end = observation_end(args.data)
    cutoff = end - timedelta(days=args.horizon_days)
    frame = customer_features(args.data, cutoff)
    frame[LABEL] = frame["customer_id"].isin(purchasers(events, cutoff, end)).astype("int32")
    valid_mask = in_validation(frame["customer_id"], args.valid_share)
    train, valid = frame[~valid_mask], frame[valid_mask]
    features = list(CUSTOMER_FEATURES)
    positive_rate = float(train[LABEL].mean())
    params = {
        "objective": "binary:logistic",
        # Early stopping watches the last metric: log loss, which keeps improving after AUC
        # has plateaued on a small validation set.
        "eval_metric": ["auc", "logloss"],
        "tree_method": "hist",
        "max_depth": 5,
        "eta": 0.08,
        "min_child_weight": 2.0,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "nthread": 1,
        "seed": 0,
    }
    booster = fit_with_ray_train(
        train,
        valid,
        features,
        LABEL,
        params,
        storage_path=args.storage,
        num_workers=args.num_workers,
        run_name="propensity",
    )
    pred = booster.inplace_predict(valid[features].to_numpy(dtype=np.float32))
    y = valid[LABEL].to_numpy()
    metrics = {
        "valid_auc": float(roc_auc_score(y, pred)) if 0 < y.sum() < len(y) else float("nan"),
        "valid_logloss": float(log_loss(y, pred, labels=[0, 1])),
        "positive_rate_train": positive_rate,
        "rows_train": int(len(train)),
        "rows_valid": int(len(valid)),
        "trees": int(booster.num_boosted_rounds()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "model.ubj"
        booster.save_model(model_path)
        version = ModelRegistry(args.registry).register(
            MODEL_NAME,
            {"model.ubj": model_path},
            {
                "metrics": metrics,
                "features": features,
                "feature_set": f"{FEATURE_SET}:v{FEATURE_SET_VERSION}",
                "label": f"purchase within {args.horizon_days} days",
                "cutoff": cutoff.isoformat(),
                "data": str(Path(args.data).resolve()),
                "data_fingerprint": fingerprint(frame),
                "holdout": fingerprint(valid[["customer_id", LABEL]]),
                "params": params,
                "trainer": f"ray.train.xgboost.XGBoostTrainer(num_workers={args.num_workers})",
            },
        )
    registry = ModelRegistry(args.registry)
    if registry.champion(MODEL_NAME).version != version.version:
        try:
            registry.promote(MODEL_NAME, version.version, metric="valid_auc")
        except PromotionRefused as refused:
            print(f"train_propensity: {refused}")
    stage = registry.stage(MODEL_NAME, version.version)
    print(f"train_propensity: {version.name}:{version.version} ({stage}) {json.dumps(metrics)}")
    return version


if __name__ == "__main__":
    main(parse_args(Args))
