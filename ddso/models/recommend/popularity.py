"""Popularity and trending, both point in time: nothing after ``as_of`` is ever read.

``Trending`` compares each item's velocity (weight bought per day) over the ``recent_days``
before ``as_of`` with the window before that, as a Poisson z-score ``(r - p) / sqrt(r + p + 1)``
of the two counts, so a rise from 2 to 20 outranks a steady 100. Two boosts add to it:

- seasonal: the same z-score one year earlier, for the window that *followed* ``as_of - 365d``
  against the one before it (what rose at this time last year); 0 when the data does not
  reach back that far;
- category momentum: the z-score of the item's whole category.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ddso.models.recommend.base import Recommender


def _as_of(interactions: pd.DataFrame, as_of: pd.Timestamp | str | None) -> pd.Timestamp:
    if as_of is None:
        return pd.Timestamp(interactions["time"].max())
    ts = pd.Timestamp(as_of)
    aware = getattr(interactions["time"].dtype, "tz", None) is not None
    return ts.tz_localize("UTC") if aware and ts.tzinfo is None else ts


def window_totals(interactions: pd.DataFrame, items: pd.Index, start: pd.Timestamp | None,
                  stop: pd.Timestamp) -> np.ndarray:
    """Summed weight per item of ``items`` for times in ``(start, stop]`` (no start: all)."""
    t = interactions["time"]
    inside = interactions[(t <= stop) if start is None else (t > start) & (t <= stop)]
    sums = inside.groupby(inside["product_id"].astype(str))["weight"].sum()
    return sums.reindex(items, fill_value=0.0).to_numpy(dtype=float)


def poisson_z(recent: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """How much ``recent`` exceeds ``previous`` in Poisson standard deviations."""
    return (recent - previous) / np.sqrt(recent + previous + 1.0)


class Popularity(Recommender):
    """Items ranked by the weight bought in the ``window_days`` before ``as_of`` (all history
    when None). ``popularity_`` holds the totals, ``as_of_`` the point in time used."""

    def __init__(self, window_days: int | None = None,
                 as_of: pd.Timestamp | str | None = None):
        self.window_days = window_days
        self.as_of = as_of

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        self.as_of_ = _as_of(interactions, self.as_of)
        start = (None if self.window_days is None
                 else self.as_of_ - pd.Timedelta(days=self.window_days))
        self.popularity_ = window_totals(interactions, self.item_pos_, start, self.as_of_)

    def scores(self, customer_id: str) -> np.ndarray:
        self._check_fitted()
        return self.popularity_.copy()


class Trending(Recommender):
    """Items ranked by rising velocity plus seasonal and category boosts (module docstring).

    ``trend_``, ``seasonal_`` and ``category_`` are the three per-item components; ``score_``
    is ``trend_ + seasonal_weight * seasonal_ + category_weight * category_``.
    """

    def __init__(self, recent_days: int = 28, as_of: pd.Timestamp | str | None = None,
                 seasonal_weight: float = 0.5, category_weight: float = 0.3):
        self.recent_days = recent_days
        self.as_of = as_of
        self.seasonal_weight = seasonal_weight
        self.category_weight = category_weight

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        self.as_of_ = _as_of(interactions, self.as_of)
        window = pd.Timedelta(days=self.recent_days)

        def z(at: pd.Timestamp, keys: pd.Index, frame: pd.DataFrame) -> np.ndarray:
            return poisson_z(window_totals(frame, keys, at - window, at),
                             window_totals(frame, keys, at - 2 * window, at - window))

        past = interactions[interactions["time"] <= self.as_of_]
        self.trend_ = z(self.as_of_, self.item_pos_, past)
        year_ago = self.as_of_ - pd.Timedelta(days=365)
        if len(past) and past["time"].min() <= year_ago - window:
            self.seasonal_ = z(year_ago + window, self.item_pos_, past)
        else:
            self.seasonal_ = np.zeros(len(self.items_))
        category = (products.assign(product_id=products["product_id"].astype(str))
                    .set_index("product_id")["category_id"].astype(str)
                    .reindex(self.item_pos_).fillna("?"))
        by_category = past.assign(product_id=past["product_id"].astype(str).map(category))
        cats = pd.Index(category.unique())
        self.category_ = z(self.as_of_, cats, by_category)[cats.get_indexer(category)]
        self.score_ = (self.trend_ + self.seasonal_weight * self.seasonal_
                       + self.category_weight * self.category_)

    def scores(self, customer_id: str) -> np.ndarray:
        self._check_fitted()
        return self.score_.copy()
