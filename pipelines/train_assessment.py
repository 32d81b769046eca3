"""Train the platform's financial assessment: ``assessment_risk`` and ``graduation``.

Rows: every enrolment whose program ended (graduated or dropped out) in the data; features:
the financial profile and history as they were at enrolment (point in time) and the age;
labels: missed payments (a dropout for missed payments, or a payment 30+ days late) for the
risk model, completion for the graduation model, which also sees the program (kind, monthly
payment against income). Monotonic constraints as the domain demands
(:data:`ddso.models.assessment.RISK_MONOTONE`, mirrored for graduation). Split by enrolment
time; calibrated on the valid period, reported on the test period, gated by the registry.

The risk model turns into points and a band (:func:`ddso.models.scorecard.score_from_probability`)
and, with the eligibility rule table, the programs a customer is eligible for
(:class:`ddso.models.assessment.Assessor`).

Enrolment is about 1 % of customers, so this needs a larger dataset than the other models:
100,000 customers over a year give about 1,000 enrolments.

    python -m pipelines.train_assessment --data .ddso/data --registry .ddso/registry
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ddso.config import load_settings
from ddso.data.dataset import Dataset
from ddso.features import context
from ddso.features.labels import program_spine
from ddso.models.assessment import (
    GRADUATION_FEATURES,
    GRADUATION_MODEL,
    GRADUATION_MONOTONE,
    RISK_FEATURES,
    RISK_MODEL,
    RISK_MONOTONE,
)
from ddso.models.registry import ModelVersion
from ddso.runtime import init_ray
from pipelines import _train
from pipelines._cli import parse_args

# Few hundred rows: small, strongly regularised trees, as for German Credit.
PARAMS = {"max_depth": 2, "eta": 0.05, "min_child_weight": 3.0, "reg_lambda": 10.0}


@dataclass
class Args:
    data: str
    """Dataset folder written by `ddso data generate` (about 100k customers x 365 days)."""
    registry: str
    """Model registry folder (or URI) the models are registered in."""
    storage: str = ".ddso/ray_results"
    """Ray Train storage folder (checkpoints)."""
    num_workers: int = 1
    """Ray Train workers (data-parallel XGBoost)."""
    json: str | None = None
    """Write the two metrics reports here (JSON, one object per model)."""


def training_frame(data: str) -> pd.DataFrame:
    """Ended enrolments with both labels, features at enrolment and the program context."""
    dataset = Dataset(data)
    spine = program_spine(_train.events(data, ["enrollment", "graduation", "dropout",
                                               "program_payment"]))
    customers = dataset.table("customers")[["customer_id", "preferred_channel", "birth_year"]]
    spine = spine.merge(customers, on="customer_id", how="left").assign(channel="email")
    frame = _train.with_features(spine, data)
    ctx = context.offer_context(frame, dataset.table("products"))
    return frame.join(ctx)


def main(args: Args) -> dict[str, ModelVersion]:
    init_ray(load_settings())
    frame = training_frame(args.data)
    out = {}
    for name, label, features, monotone, describe in (
        (RISK_MODEL, "missed_payments", RISK_FEATURES, RISK_MONOTONE,
         "missed payments in the program (dropout for missed payments or 30+ days late)"),
        (GRADUATION_MODEL, "graduated", GRADUATION_FEATURES, GRADUATION_MONOTONE,
         "the program is completed"),
    ):
        json_path = f"{args.json}.{name}.json" if args.json else None
        _, out[name] = _train.fit_register(
            name, frame, list(features), label,
            registry=args.registry, storage=args.storage, data=args.data, describe=describe,
            num_workers=args.num_workers, monotone=monotone, params=PARAMS,
            metrics_json=json_path,
        )
    return out


if __name__ == "__main__":
    main(parse_args(Args))
