"""Train the churn model with Ray Train XGBoost and register it as ``churn``.

Rows: every customer active (created, not yet churned) at each of ``cutoffs`` monthly cutoffs;
label: a churn event within ``horizon_days`` after the cutoff; features: the customer feature
set exactly as it was at the cutoff (:func:`ddso.features.training_sets.point_in_time`).
Cutoffs are one horizon apart and the split is by time (oldest cutoffs train, then valid,
then test), so no label window overlaps a later period. Calibrated on the valid period,
reported on the test period, promoted through the registry's gate.

    python -m pipelines.train_churn --data .ddso/data --registry .ddso/registry
    ray job submit --working-dir . -- python -m pipelines.train_churn --data ... --registry ...
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

MODEL_NAME = "churn"


@dataclass
class Args:
    data: str
    """Dataset folder written by `ddso data generate`."""
    registry: str
    """Model registry folder (or URI) the model is registered in."""
    storage: str = ".ddso/ray_results"
    """Ray Train storage folder (checkpoints)."""
    horizon_days: int = 30
    """A churn within this many days after a cutoff is a positive."""
    cutoffs: int = 6
    """Monthly cutoffs (one horizon apart, the last one horizon before the data ends)."""
    history_days: int = 60
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
    spine = cutoff_spine(_train.events(args.data, ["churn"]), customers, cuts, horizon, ["churn"])
    frame = _train.with_features(spine, args.data)
    _, version = _train.fit_register(
        MODEL_NAME, frame, list(CUSTOMER_FEATURES), "label",
        registry=args.registry, storage=args.storage, data=args.data,
        describe=f"churn within {args.horizon_days} days of the cutoff",
        num_workers=args.num_workers, metrics_json=args.json,
        valid_share=1 / len(cuts), test_share=1 / len(cuts),
    )
    return version


if __name__ == "__main__":
    main(parse_args(Args))
