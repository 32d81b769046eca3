"""Train the purchase-propensity model with Ray Train XGBoost and register it as ``propensity``.

Rows: every customer active at each of ``cutoffs`` cutoffs (one horizon apart, the last one
horizon before the data ends); label: the customer buys within ``horizon_days`` after the
cutoff; features: everything known at the cutoff (point in time: later events are never
used). Split by time (oldest cutoffs train, the next validates and drives early stopping and
calibration, the newest is the test period the report and the registry's gate use).

    python -m pipelines.train_propensity --data .ddso/data --registry .ddso/registry
    ray job submit --working-dir . -- \
        python -m pipelines.train_propensity --data ... --registry ...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ddso.config import load_settings
from ddso.data.dataset import Dataset
from ddso.features.labels import cutoff_spine, cutoffs_between
from ddso.features.sets import CUSTOMER_FEATURES
from ddso.models.registry import ModelVersion
from ddso.runtime import init_ray
from pipelines import _train
from pipelines._cli import parse_args

MODEL_NAME = "propensity"


@dataclass
class Args:
    data: str
    """Dataset folder written by `ddso data generate`."""
    registry: str
    """Model registry folder (or URI) the trained model is registered in."""
    storage: str = ".ddso/ray_results"
    """Ray Train storage folder (checkpoints)."""
    horizon_days: int = 30
    """Prediction horizon: a purchase within this many days after a cutoff is a positive."""
    cutoffs: int = 3
    """Cutoffs one horizon apart: at least 3 (train, valid, test periods)."""
    history_days: int = 21
    """No cutoff in the first days of the data: features need some history."""
    num_workers: int = 1
    """Ray Train workers (data-parallel XGBoost)."""
    json: str | None = None
    """Write the metrics report here (JSON)."""


def main(args: Args) -> ModelVersion:
    init_ray(load_settings())
    start, end = _train.window(args.data)
    horizon = timedelta(days=args.horizon_days)
    cuts = cutoffs_between(start + timedelta(days=args.history_days), end, horizon, args.cutoffs)
    customers = Dataset(args.data).table("customers")[["customer_id", "created_at"]]
    spine = cutoff_spine(_train.events(args.data, ["churn", "purchase"]), customers, cuts,
                         horizon, ["purchase"])
    frame = _train.with_features(spine, args.data)
    _, version = _train.fit_register(
        MODEL_NAME, frame, list(CUSTOMER_FEATURES), "label",
        registry=args.registry, storage=args.storage, data=args.data,
        describe=f"purchase within {args.horizon_days} days of the cutoff",
        num_workers=args.num_workers, metrics_json=args.json,
        valid_share=1 / len(cuts), test_share=1 / len(cuts),
    )
    return version


if __name__ == "__main__":
    main(parse_args(Args))
