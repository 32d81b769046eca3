"""Offline evaluation: interactions from the warehouse, a time-based split and top-k metrics.

The split trains on everything before ``cutoff``; a customer is a test customer when they
bought before and after it, and their relevant items are those bought after it (by default
only the ones they had not bought before, since recommenders are asked to exclude owned items).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ddso.models.recommend.base import Recommender, check_interactions


def interactions_from_sales(sales: pd.DataFrame, details: pd.DataFrame) -> pd.DataFrame:
    """Warehouse ``sales`` + ``sales_details`` -> customer_id, product_id, weight (quantity),
    time (``sold_at``) and basket_id (``sale_id``)."""
    lines = details.merge(sales[["sale_id", "customer_id", "sold_at"]], on="sale_id")
    return pd.DataFrame({
        "customer_id": lines["customer_id"].astype(str),
        "product_id": lines["product_id"].astype(str),
        "weight": lines["quantity"].astype(float),
        "time": lines["sold_at"],
        "basket_id": lines["sale_id"].astype(str),
    })


def catalogue(products: pd.DataFrame, categories: pd.DataFrame, subcategories: pd.DataFrame,
              brands: pd.DataFrame) -> pd.DataFrame:
    """Products with ``category_name``, ``subcategory_name`` and ``brand_name`` joined in."""
    def names(frame: pd.DataFrame, key: str) -> pd.Series:
        return frame.drop_duplicates(key).set_index(key)["name"]

    return products.assign(
        category_name=products["category_id"].map(names(categories, "category_id")),
        subcategory_name=products["subcategory_id"].map(names(subcategories, "subcategory_id")),
        brand_name=products["brand_id"].map(names(brands, "brand_id")),
    )


@dataclass(frozen=True)
class Split:
    """``train`` interactions (before ``cutoff``) and each test customer's relevant items."""

    train: pd.DataFrame
    test: dict[str, set[str]]
    cutoff: pd.Timestamp


def time_split(interactions: pd.DataFrame, cutoff: pd.Timestamp | str,
               new_only: bool = True) -> Split:
    """Split at ``cutoff`` (see module docstring)."""
    check_interactions(interactions)
    cutoff = pd.Timestamp(cutoff)
    if getattr(interactions["time"].dtype, "tz", None) is not None and cutoff.tzinfo is None:
        cutoff = cutoff.tz_localize("UTC")
    before = interactions["time"] < cutoff
    train, after = interactions[before], interactions[~before]
    owned = train.groupby("customer_id")["product_id"].agg(set)
    bought = after.groupby("customer_id")["product_id"].agg(set)
    test = {}
    for customer, items in bought.items():
        if customer in owned.index:
            relevant = items - owned[customer] if new_only else items
            if relevant:
                test[str(customer)] = {str(i) for i in relevant}
    return Split(train=train.reset_index(drop=True), test=test, cutoff=cutoff)


def hit_rate(recommended: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """1 when any of the first ``k`` recommendations is relevant, else 0."""
    return float(any(r in relevant for r in recommended[:k]))


def ndcg(recommended: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """DCG of the first ``k`` (gain 1 / log2(rank + 1)) over the best possible DCG."""
    dcg = sum(1.0 / np.log2(i + 2) for i, r in enumerate(recommended[:k]) if r in relevant)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(relevant), k)))
    return float(dcg / ideal) if ideal else 0.0


def average_precision(recommended: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """Mean of precision@i at each relevant rank i <= k, over min(|relevant|, k)."""
    hits, total = 0, 0.0
    for i, r in enumerate(recommended[:k]):
        if r in relevant:
            hits += 1
            total += hits / (i + 1)
    denom = min(len(relevant), k)
    return total / denom if denom else 0.0


def coverage(recommendations: Iterable[Sequence[str]], n_items: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one recommendation list."""
    seen = set().union(*map(set, recommendations)) if n_items else set()
    return len(seen) / n_items if n_items else 0.0


def evaluate(model: Recommender, split: Split, products: pd.DataFrame, k: int = 10,
             exclude_owned: bool = True) -> dict[str, float]:
    """Fit ``model`` on the split's train part and score its top ``k`` for each test customer.

    Returns ``hr``, ``ndcg``, ``map``, ``coverage`` (of the products frame) and ``fit_s``.
    """
    began = time.perf_counter()
    model.fit(split.train, products)
    fit_s = time.perf_counter() - began
    owned = split.train.groupby("customer_id")["product_id"].agg(set)
    hr, nd, ap, lists = [], [], [], []
    for customer, relevant in split.test.items():
        exclude = owned.get(customer, set()) if exclude_owned else set()
        recs = [item for item, _ in model.recommend(customer, k, exclude)]
        lists.append(recs)
        hr.append(hit_rate(recs, relevant, k))
        nd.append(ndcg(recs, relevant, k))
        ap.append(average_precision(recs, relevant, k))
    n = max(len(lists), 1)
    return {"hr": sum(hr) / n, "ndcg": sum(nd) / n, "map": sum(ap) / n,
            "coverage": coverage(lists, products["product_id"].nunique()), "fit_s": fit_s}
