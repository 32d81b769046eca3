"""Category affinities along the product hierarchy, from sales lines (MV_Sales, MV_SalesDetail).

For each customer, over the sales of the ``window_days`` calendar days ending with ``as_of``'s
day (at or before ``as_of``; UTC days as in :mod:`ddso.features.behaviour`), net spend is
summed per category and per subcategory. The top category is the one with the most spend
(ties: the smallest id), and the top subcategory is the best one *within* that category, so
the pair walks down the hierarchy. A pure batch function; refreshed with the batch snapshot.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ddso.data.dataset import read_parquet

DAY_S = 86_400

NUMERIC_COLUMNS: tuple[str, ...] = (
    "top_category_share_365d",
    "top_subcategory_share_365d",
    "categories_bought_365d",
)
"""Numeric affinity features (model-ready)."""
LABEL_COLUMNS: tuple[str, ...] = ("top_category", "top_subcategory")
"""The ids behind the shares ("" when the customer bought nothing in the window)."""
FEATURE_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, *LABEL_COLUMNS)


def category_affinity(
    sales: pd.DataFrame,
    sales_details: pd.DataFrame,
    products: pd.DataFrame,
    as_of: datetime,
    window_days: int = 365,
) -> pd.DataFrame:
    """One row per customer with a sale in the window (columns: FEATURE_COLUMNS)."""
    sold = pd.to_datetime(sales["sold_at"], utc=True).astype("datetime64[us, UTC]")
    sold_s = sold.astype("int64").to_numpy() / 1e6
    as_of_s = as_of.timestamp()
    age_days = np.floor(as_of_s / DAY_S) - np.floor(sold_s / DAY_S)
    recent = sales.loc[(sold_s <= as_of_s) & (age_days < window_days), ["sale_id", "customer_id"]]
    lines = sales_details.merge(recent, on="sale_id").merge(
        products[["product_id", "category_id", "subcategory_id"]], on="product_id"
    )
    if lines.empty:
        return pd.DataFrame(columns=["customer_id", *FEATURE_COLUMNS])
    lines["spend"] = lines["quantity"] * lines["unit_price"] * (1 - lines["discount"].fillna(0))
    by_cat = lines.groupby(["customer_id", "category_id"], as_index=False)["spend"].sum()
    total = by_cat.groupby("customer_id")["spend"].transform("sum")
    by_cat["share"] = np.where(total > 0, by_cat["spend"] / total, 0.0)
    # Most spend first, then the smallest id: a deterministic top on ties.
    top = by_cat.sort_values(["customer_id", "share", "category_id"], ascending=[True, False, True])
    top = top.drop_duplicates("customer_id")
    n_cats = by_cat.groupby("customer_id").size().rename("categories_bought_365d")
    in_top = lines.merge(top[["customer_id", "category_id"]], on=["customer_id", "category_id"])
    by_sub = in_top.groupby(["customer_id", "subcategory_id"], as_index=False)["spend"].sum()
    sub_total = by_sub.groupby("customer_id")["spend"].transform("sum")
    by_sub["sub_share"] = np.where(sub_total > 0, by_sub["spend"] / sub_total, 0.0)
    top_sub = by_sub.sort_values(
        ["customer_id", "sub_share", "subcategory_id"], ascending=[True, False, True]
    ).drop_duplicates("customer_id")
    out = (
        top[["customer_id", "category_id", "share"]]
        .merge(top_sub[["customer_id", "subcategory_id", "sub_share"]], on="customer_id")
        .merge(n_cats.reset_index(), on="customer_id")
    )
    return pd.DataFrame(
        {
            "customer_id": out["customer_id"],
            "top_category_share_365d": out["share"].astype(float),
            "top_subcategory_share_365d": out["sub_share"].astype(float),
            "categories_bought_365d": out["categories_bought_365d"].astype(float),
            "top_category": out["category_id"].astype(str),
            "top_subcategory": out["subcategory_id"].astype(str),
        }
    ).reset_index(drop=True)


def affinity_features(warehouse_dir: str | Path, as_of: datetime) -> pd.DataFrame:
    """:func:`category_affinity` over a generated dataset's warehouse tables."""
    w = Path(warehouse_dir)
    return category_affinity(
        read_parquet(w / "sales", ["sale_id", "customer_id", "sold_at"]).to_pandas(),
        read_parquet(
            w / "sales_details", ["sale_id", "product_id", "quantity", "unit_price", "discount"]
        ).to_pandas(),
        read_parquet(w / "products", ["product_id", "category_id", "subcategory_id"]).to_pandas(),
        as_of,
    )
