"""Train the neural recommenders (``ncf``: neural collaborative filtering; ``wide_deep``: Wide &
Deep) with Ray Train and register them.

Interactions are the dataset's purchase lines; the split is by time: everything before the
last ``test_days`` trains (each model holds out the end of that part again to choose its
number of epochs), and the customers who bought new items in the last ``test_days`` are the
test set, scored on HR@10 and NDCG@10 with their owned items excluded. The registered model
is the one evaluated (fitted on the training part only). Popularity and item-item CF are
scored on the same split, as the baselines a neural model has to beat.

Gate: a version is promoted if there is no champion yet, or if its NDCG@10 is no worse than
the champion's on the same test set: the champion's recorded score when both were scored on
the same holdout (same dataset and split), else the champion re-scored on this one (it may
then have been trained on some of these test purchases: compare such numbers with care).

    python -m pipelines.train_recommenders --data .ddso/data --registry .ddso/registry
    ray job submit --working-dir . -- \
        python -m pipelines.train_recommenders --data ... --registry ...
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddso.config import load_settings
from ddso.data.dataset import Dataset
from ddso.errors import UserError
from ddso.models.recommend.base import Recommender
from ddso.models.recommend.cf import ItemCF
from ddso.models.recommend.deep import DeepRecommender
from ddso.models.recommend.deep_training import Training
from ddso.models.recommend.evaluate import (
    Split,
    catalogue,
    evaluate,
    hit_rate,
    interactions_from_sales,
    ndcg,
    time_split,
)
from ddso.models.recommend.ncf import NeuralCF
from ddso.models.recommend.popularity import Popularity
from ddso.models.recommend.wide_deep import WideDeep
from ddso.models.registry import ModelRegistry, ModelVersion, PromotionRefused
from ddso.runtime import init_ray
from pipelines._cli import parse_args

GATE_METRIC = "ndcg10"
K = 10


@dataclass
class Args:
    data: str
    """Dataset folder written by `ddso data generate`."""
    registry: str
    """Model registry folder (or URI) the models are registered in."""
    storage: str = ".ddso/ray_results"
    """Ray Train storage folder (checkpoints)."""
    test_days: int = 90
    """The last days of purchases are the test period."""
    epochs: int = 30
    """Most epochs per model; early stopping on the validation part usually stops sooner."""
    patience: int = 3
    """Epochs without a better validation NDCG@10 before training stops."""
    seed: int = 0
    """Seed of the weights, the sampled negatives and the batches."""
    num_workers: int = 1
    """Ray Train workers per model (0: train in this process, without Ray)."""
    json: str | None = None
    """Write the report here (JSON)."""


def holdout(split: Split) -> str:
    """A short hash of the test set (cutoff, customers and their relevant items)."""
    text = json.dumps([str(split.cutoff), sorted((c, sorted(i)) for c, i in split.test.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ranking_metrics(model: Recommender, split: Split) -> dict[str, float]:
    """HR@10 and NDCG@10 of an already fitted model on the split's test customers."""
    hr, nd = [], []
    for customer, relevant in split.test.items():
        recs = [i for i, _ in model.recommend(customer, K, model.owned(customer))]
        hr.append(hit_rate(recs, relevant, K))
        nd.append(ndcg(recs, relevant, K))
    return {"hr10": float(np.mean(hr)), "ndcg10": float(np.mean(nd))}


def register_and_gate(registry: ModelRegistry, name: str, model: DeepRecommender,
                      metadata: dict[str, Any], split: Split) -> tuple[ModelVersion, str]:
    """Register ``model`` as a candidate and promote it through the gate (module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        version = registry.register(name, model.save(tmp), metadata, promote=False)
    try:
        current = registry.champion(name)
    except UserError:
        registry.promote(name, version.version)
        return version, f"{name} {version.version} is the first champion"
    score = None
    if current.metadata.get("holdout") != metadata["holdout"]:
        score = ranking_metrics(type(model).load(current), split)[GATE_METRIC]
    try:
        registry.promote(name, version.version, metric=GATE_METRIC, champion_score=score)
    except PromotionRefused as refused:
        return version, str(refused)
    return version, f"{name} {version.version} promoted over {current.version}"


def _training(args: Args, name: str) -> dict[str, Any]:
    return {"epochs": args.epochs, "patience": args.patience, "seed": args.seed,
            "num_workers": args.num_workers, "storage_path": args.storage, "run_name": name}


def main(args: Args) -> dict[str, Any]:
    if args.num_workers > 0:
        init_ray(load_settings())
    data = Dataset(args.data)
    interactions = interactions_from_sales(data.table("sales"), data.table("sales_details"))
    products = catalogue(data.table("products"), data.table("categories"),
                         data.table("subcategories"), data.table("brands"))
    cutoff = interactions["time"].max() - pd.Timedelta(days=args.test_days)
    split = time_split(interactions, cutoff)
    if not split.test:
        raise UserError(f"no customer bought new items in the last {args.test_days} days of "
                        f"{args.data}; lower --test-days or generate more customers")
    report: dict[str, Any] = {
        "data": str(Path(args.data).resolve()), "cutoff": str(cutoff), "holdout": holdout(split),
        "train_interactions": len(split.train), "test_customers": len(split.test),
    }
    for name, baseline in (("popularity", Popularity()), ("item_cf", ItemCF("cosine"))):
        result = evaluate(baseline, split, products, k=K)
        report[name] = {"hr10": result["hr"], "ndcg10": result["ndcg"]}
    registry = ModelRegistry(args.registry)
    models: dict[str, DeepRecommender] = {
        "ncf": NeuralCF(training=Training(**_training(args, "ncf"))),
        "wide_deep": WideDeep(training=Training(**_training(args, "wide_deep"))),
    }
    for name, model in models.items():
        result = evaluate(model, split, products, k=K)
        metrics = {"hr10": result["hr"], "ndcg10": result["ndcg"], "map10": result["map"],
                   "coverage": result["coverage"], "fit_s": result["fit_s"],
                   "valid_ndcg10": model.training_["valid_ndcg10"],
                   "best_epochs": model.training_["best_epochs"]}
        version, outcome = register_and_gate(registry, name, model, {
            "metrics": metrics, "holdout": report["holdout"], "data": report["data"],
            "split": {"cutoff": report["cutoff"], "test_days": args.test_days,
                      "test_customers": len(split.test)},
            "baselines": {b: report[b] for b in ("popularity", "item_cf")},
            "trainer": f"ray.train.torch.TorchTrainer(num_workers={args.num_workers})",
        }, split)
        report[name] = {**metrics, "version": version.version,
                        "stage": registry.stage(name, version.version), "outcome": outcome}
        print(f"{name}: {outcome}")
    for name in ("popularity", "item_cf", *models):
        print(f"{name}: HR@10 {report[name]['hr10']:.4f}  NDCG@10 {report[name]['ndcg10']:.4f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main(parse_args(Args))
