"""A weighted blend of recommenders under business rules.

Each component's scores are min-max normalised per customer (no opinion counts as 0) and
summed with their weights. Then, in this order:

1. eligibility: ``eligibility(customer_id, products) -> bool mask``, or, when a ``customers``
   frame (indexed by ``customer_id``, columns ``band``, ``debt_to_income``, ``age``,
   ``monthly_income``) is given, the products' ``eligibility_*`` columns against it, by the
   rules of :mod:`ddso.policy.eligibility` (shared with arbitration; an unknown fact fails);
2. products the customer already owns are dropped;
3. diversity: walking down the ranking, at most ``max_per_category`` items per category.

Customers without history get the ``fallback`` model's scores (trending by default), or the
popularity within their segment when ``segments`` maps them to one.

Components named in ``prefit`` are already fitted (a model loaded from the registry, or one
fitted once and shared by several blends) and are not fitted again: their scores are mapped
onto the hybrid's items by product id, an item they do not know counting as no opinion.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

import numpy as np
import pandas as pd

from ddso.errors import UserError
from ddso.models.recommend.base import Recommender, top_k
from ddso.models.recommend.cf import ItemCF, UserCF
from ddso.models.recommend.content import ContentTfidf
from ddso.models.recommend.popularity import Popularity, Trending
from ddso.policy.eligibility import eligible_mask

Eligibility = Callable[[str, pd.DataFrame], np.ndarray]


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1]; NaN (no opinion) becomes 0, a constant vector all 1."""
    s = np.nan_to_num(scores, nan=-np.inf)
    finite = np.isfinite(s)
    if not finite.any():
        return np.zeros(len(s))
    lo, hi = s[finite].min(), s[finite].max()
    out = np.ones(len(s)) if hi == lo else (s - lo) / (hi - lo)
    return np.where(finite, out, 0.0)


def rule_eligibility(products: pd.DataFrame, customer: Mapping[str, object] | None) -> np.ndarray:
    """True where the customer meets every ``eligibility_*`` rule the product has."""
    return eligible_mask(products, {} if customer is None else dict(customer))


def default_components() -> dict[str, tuple[Recommender, float]]:
    """The hybrid's parts and weights when none are chosen: item-CF, user-CF, TF-IDF content
    and popularity (``ddso bench recommend`` reports this blend as ``hybrid``)."""
    return {"item_cf": (ItemCF("cosine"), 1.0), "user_cf": (UserCF("cosine"), 0.5),
            "content": (ContentTfidf(), 0.3), "popularity": (Popularity(), 0.7)}


class Hybrid(Recommender):
    """Blend of ``components`` (name -> (model, weight)) under the business rules above.

    ``products_`` is the products frame aligned to ``items_``; ``categories_`` their categories;
    ``segment_popularity_`` the per-segment popularity used for cold starts.
    """

    def __init__(
        self,
        components: Mapping[str, tuple[Recommender, float]],
        eligibility: Eligibility | None = None,
        customers: pd.DataFrame | None = None,
        max_per_category: int | None = 3,
        exclude_owned: bool = True,
        fallback: Recommender | None = None,
        segments: Mapping[str, str] | None = None,
        prefit: Collection[str] = (),
    ):
        self.components = components
        self.eligibility = eligibility
        self.customers = customers
        self.max_per_category = max_per_category
        self.exclude_owned = exclude_owned
        self.fallback = fallback
        self.segments = segments
        self.prefit = frozenset(prefit)

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        if not self.components:
            raise UserError(
                "Hybrid needs at least one component; pass components={name: (model, weight)}"
            )
        unknown = sorted(self.prefit - set(self.components))
        if unknown:
            raise UserError(f"prefit names {unknown}, which are not components; components: "
                            f"{sorted(self.components)}")
        self.align_: dict[str, np.ndarray] = {}
        for name in sorted(self.prefit):
            model = self.components[name][0]
            model._check_fitted()
            if not np.array_equal(model.items_, self.items_):  # else its scores fit as they are
                self.align_[name] = model.item_pos_.get_indexer(self.items_)  # -1: unknown
        self.fallback_ = self.fallback if self.fallback is not None else Trending()
        fitted_here = [m for n, (m, _) in self.components.items() if n not in self.prefit]
        for model in fitted_here + [self.fallback_]:
            model.fit(interactions, products)
            if not np.array_equal(model.items_, self.items_):
                raise UserError(
                    f"{type(model).__name__} indexed items differently; components "
                    "must be Recommender subclasses fitted on the same data"
                )
        self.products_ = (
            products.assign(product_id=products["product_id"].astype(str))
            .drop_duplicates("product_id")
            .set_index("product_id")
            .reindex(self.item_pos_)
        )
        self.categories_ = self.products_["category_id"].astype("string").fillna("?").to_numpy()
        self.segment_popularity_ = {}
        if self.segments:
            seg = interactions["customer_id"].astype(str).map(self.segments)
            for name, part in interactions.groupby(seg.to_numpy()):
                sums = part.groupby(part["product_id"].astype(str))["weight"].sum()
                self.segment_popularity_[name] = sums.reindex(
                    self.item_pos_, fill_value=0.0
                ).to_numpy(dtype=float)

    def scores(self, customer_id: str) -> np.ndarray:
        """Blended scores before the business rules; the cold-start fallback without history."""
        row = self.history(customer_id)
        if row is None or row.nnz == 0:
            segment = (self.segments or {}).get(customer_id)
            if segment in self.segment_popularity_:
                return self.segment_popularity_[segment].copy()
            return self.fallback_.scores(customer_id)
        return sum(w * minmax(self.component_scores(name, customer_id))
                   for name, (_, w) in self.components.items())

    def component_scores(self, name: str, customer_id: str) -> np.ndarray:
        """Component ``name``'s scores over ``items_`` (a prefit one's mapped by product id)."""
        scores = self.components[name][0].scores(customer_id)
        index = self.align_.get(name)
        return scores if index is None else np.where(index >= 0, scores[index], np.nan)

    def eligible(self, customer_id: str) -> np.ndarray:
        """Boolean mask over ``items_`` of the products this customer may be offered."""
        self._check_fitted()
        if self.eligibility is not None:
            return np.asarray(self.eligibility(customer_id, self.products_), dtype=bool)
        if self.customers is None:
            return np.ones(len(self.items_), dtype=bool)
        known = customer_id in self.customers.index
        return rule_eligibility(self.products_, self.customers.loc[customer_id] if known else None)

    def recommend(
        self, customer_id: str, k: int = 10, exclude: Iterable[str] = frozenset()
    ) -> list[tuple[str, float]]:
        """Top ``k`` after eligibility, owned-product exclusion and the per-category cap."""
        self._check_fitted()
        scores = np.where(self.eligible(customer_id), self.scores(customer_id), np.nan)
        drop = set(exclude) | (self.owned(customer_id) if self.exclude_owned else set())
        ranked = top_k(self.items_, scores, len(self.items_), drop)
        if self.max_per_category is None:
            return ranked[:k]
        taken: dict[str, int] = {}
        out = []
        for item, score in ranked:
            cat = self.categories_[self.item_pos_.get_loc(item)]
            if taken.get(cat, 0) < self.max_per_category:
                taken[cat] = taken.get(cat, 0) + 1
                out.append((item, score))
                if len(out) == k:
                    break
        return out
