"""Benchmark of the recommenders on a generated dataset with a time-based split.

Options: ``customers`` (default 20000), ``days`` (default 365), ``seed`` (default 0),
``test_days`` (default 90: the split's cutoff is that many days before the last sale) and
``k`` (default 10). For each of popularity, trending, item_cf, user_cf (both cosine), rules,
content and hybrid it reports ``<name>_hr10``, ``_ndcg10``, ``_map10``, ``_coverage`` and
``_fit_s``, plus ``test_customers``. The dataset goes to a temporary directory.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from ddso.data.dataset import Dataset
from ddso.data.generator import GeneratorConfig, generate
from ddso.models.recommend.base import Recommender
from ddso.models.recommend.cf import ItemCF, UserCF
from ddso.models.recommend.content import ContentTfidf
from ddso.models.recommend.evaluate import (
    catalogue,
    evaluate,
    interactions_from_sales,
    time_split,
)
from ddso.models.recommend.hybrid import Hybrid
from ddso.models.recommend.popularity import Popularity, Trending
from ddso.models.recommend.rules import AssociationRules


def models() -> dict[str, Recommender]:
    """The recommenders compared, by the name their metrics are reported under."""
    return {
        "popularity": Popularity(),
        "trending": Trending(),
        "item_cf": ItemCF("cosine"),
        "user_cf": UserCF("cosine"),
        "rules": AssociationRules(),
        "content": ContentTfidf(),
        "hybrid": Hybrid({"item_cf": (ItemCF("cosine"), 1.0), "user_cf": (UserCF("cosine"), 0.5),
                          "content": (ContentTfidf(), 0.3), "popularity": (Popularity(), 0.7)}),
    }


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Generate, split, fit and evaluate every model (see module docstring)."""
    cfg = GeneratorConfig(customers=int(options.get("customers", 20_000)),
                          days=int(options.get("days", 365)), seed=int(options.get("seed", 0)))
    k = int(options.get("k", 10))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ddso-bench-recommend-") as tmp:
        generate(cfg, Path(tmp) / "data", progress=False)
        data = Dataset(Path(tmp) / "data")
        interactions = interactions_from_sales(data.table("sales"), data.table("sales_details"))
        products = catalogue(data.table("products"), data.table("categories"),
                             data.table("subcategories"), data.table("brands"))
    cutoff = interactions["time"].max() - pd.Timedelta(days=int(options.get("test_days", 90)))
    split = time_split(interactions, cutoff)
    metrics: dict[str, float | int | str] = {
        "customers": cfg.customers, "days": cfg.days, "seed": cfg.seed, "k": k,
        "interactions": len(interactions), "train_interactions": len(split.train),
        "test_customers": len(split.test),
    }
    for name, model in models().items():
        result = evaluate(model, split, products, k=k)
        for metric in ("hr", "ndcg", "map"):
            metrics[f"{name}_{metric}{k}"] = round(result[metric], 4)
        metrics[f"{name}_coverage"] = round(result["coverage"], 4)
        metrics[f"{name}_fit_s"] = round(result["fit_s"], 3)
    metrics["wall_s"] = round(time.perf_counter() - began, 3)
    return metrics
