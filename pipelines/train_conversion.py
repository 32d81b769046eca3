"""Train the conversion-propensity model for (customer, offer, channel) in context: ``conversion``.

Rows: every offer shown (a program through a channel at a time); label: the customer enrolled
in that program within ``window_days``; features: the customer feature set as it was at the
offer (point in time) plus the decision context of :mod:`ddso.features.context` (channel,
whether it is the preferred one, program kind, price and monthly payment against income,
debt-to-income headroom, age, hour and weekday). Split by offer time; calibrated on the
valid period, reported on the test period, promoted through the registry's gate.

Serving scores every eligible (offer, channel) of a customer with it and ranks by
P(conversion) x value.

    python -m pipelines.train_conversion --data .ddso/data --registry .ddso/registry
    ray job submit --working-dir . -- python -m pipelines.train_conversion --data ... \
        --registry ...
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ddso.config import load_settings
from ddso.data.dataset import Dataset
from ddso.features import context
from ddso.features.labels import offer_spine
from ddso.features.sets import CUSTOMER_FEATURES
from ddso.models.registry import ModelVersion
from ddso.runtime import init_ray
from pipelines import _train
from pipelines._cli import parse_args

MODEL_NAME = "conversion"
FEATURES: list[str] = [*CUSTOMER_FEATURES, *context.FEATURE_COLUMNS]


@dataclass
class Args:
    data: str
    """Dataset folder written by `ddso data generate`."""
    registry: str
    """Model registry folder (or URI) the model is registered in."""
    storage: str = ".ddso/ray_results"
    """Ray Train storage folder (checkpoints)."""
    window_days: int = 21
    """An enrolment in the offered program within this many days is a conversion."""
    num_workers: int = 1
    """Ray Train workers (data-parallel XGBoost)."""
    json: str | None = None
    """Write the metrics report here (JSON)."""


def training_frame(data: str, window_days: int):
    """Offers shown with their label, customer features at the offer time and the context."""
    _, end = _train.window(data)
    dataset = Dataset(data)
    spine = offer_spine(_train.events(data, ["offer_shown", "enrollment"]), end,
                        timedelta(days=window_days))
    customers = dataset.table("customers")[["customer_id", "preferred_channel", "birth_year"]]
    frame = _train.with_features(spine.merge(customers, on="customer_id", how="left"), data)
    return frame.join(context.offer_context(frame, dataset.table("products")))


def main(args: Args) -> ModelVersion:
    init_ray(load_settings())
    frame = training_frame(args.data, args.window_days)
    _, version = _train.fit_register(
        MODEL_NAME, frame, FEATURES, "label",
        registry=args.registry, storage=args.storage, data=args.data,
        describe=f"enrolment in the offered program within {args.window_days} days",
        num_workers=args.num_workers, metrics_json=args.json,
        # Few positives: a lower child weight lets rare-offer splits form; early stopping on
        # the valid period guards against overfitting.
        params={"min_child_weight": 1.0, "max_depth": 3},
    )
    return version


if __name__ == "__main__":
    main(parse_args(Args))
