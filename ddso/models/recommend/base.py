"""The interface every recommender shares, and the index and matrix they all build on.

A recommender is fitted on ``interactions`` (one row per purchase line: ``customer_id``,
``product_id``, ``weight`` such as the quantity, and ``time``; an optional ``basket_id``) and
on ``products`` (one row per product, ``product_id`` plus whatever the model reads). Then
``recommend(customer_id, k, exclude)`` returns up to ``k`` ``(product_id, score)`` pairs, best
first. Every model scores the same item index (all products, then any product that appears only
in the interactions), so a hybrid can blend their :meth:`Recommender.scores` vectors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ddso.errors import NotFittedError, UserError

INTERACTION_COLUMNS = ("customer_id", "product_id", "weight", "time")


def check_interactions(interactions: pd.DataFrame) -> None:
    """Raise :class:`UserError` naming the missing columns of an interactions frame."""
    missing = [c for c in INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        raise UserError(f"interactions lack columns {missing}; expected {list(INTERACTION_COLUMNS)}"
                        " (see ddso.models.recommend.evaluate.interactions_from_sales)")


def item_index(interactions: pd.DataFrame, products: pd.DataFrame) -> np.ndarray:
    """All product ids of the catalogue, then those seen only in the interactions, as str."""
    known = pd.Index(products["product_id"].astype(str)).unique()
    extra = pd.Index(interactions["product_id"].astype(str)).unique().difference(known)
    return np.asarray(known.append(extra.sort_values()), dtype=object)


def position(index: pd.Index, key: str) -> int:
    """``key``'s position in a unique ``index``, or -1: one hash lookup (``get_indexer([key])``
    costs ~0.3 ms of list-to-index conversion, several times per request in a hybrid)."""
    try:
        return index.get_loc(key)
    except KeyError:
        return -1


def top_k(items: np.ndarray, scores: np.ndarray, k: int,
          exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
    """The ``k`` best ``(item, score)`` pairs; NaN scores mean "no opinion" and are dropped."""
    keep = ~np.isnan(scores)
    if exclude:
        keep &= ~np.isin(items, list(exclude))
    idx = np.flatnonzero(keep)
    if idx.size > k:
        idx = idx[np.argpartition(-scores[idx], k - 1)[:k]]
    idx = idx[np.lexsort((idx, -scores[idx]))]  # best first; ties by catalogue order
    return [(str(items[i]), float(scores[i])) for i in idx]


class Recommender(ABC):
    """Base class: builds ``items_``, ``customers_`` and the customer x item matrix ``matrix_``.

    Subclasses implement :meth:`_fit` (learn from the fitted index) and :meth:`scores` (one
    score per item of ``items_`` for a customer; NaN where the model has no opinion).
    """

    def fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> Self:
        """Index the data, build ``matrix_`` (summed weights, CSR) and learn the model."""
        check_interactions(interactions)
        self.items_ = item_index(interactions, products)
        self.item_pos_ = pd.Index(self.items_)
        customers = pd.Index(interactions["customer_id"].astype(str)).unique().sort_values()
        self.customers_ = np.asarray(customers, dtype=object)
        self.customer_pos_ = pd.Index(self.customers_)
        rows = self.customer_pos_.get_indexer(interactions["customer_id"].astype(str))
        cols = self.item_pos_.get_indexer(interactions["product_id"].astype(str))
        weight = interactions["weight"].to_numpy(dtype=float)
        self.matrix_ = sp.csr_matrix((weight, (rows, cols)),
                                     shape=(len(self.customers_), len(self.items_)))
        self.matrix_.sum_duplicates()
        self._fit(interactions, products)
        return self

    @abstractmethod
    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None: ...

    @abstractmethod
    def scores(self, customer_id: str) -> np.ndarray:
        """One score per item of ``items_`` for ``customer_id``; NaN = no opinion."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(interactions,"
                                 " products) before recommend or scores")

    def history(self, customer_id: str) -> sp.csr_matrix | None:
        """The customer's row of ``matrix_`` (1 x items), or None for an unknown customer."""
        self._check_fitted()
        pos = position(self.customer_pos_, customer_id)
        return None if pos < 0 else self.matrix_[pos]

    def owned(self, customer_id: str) -> set[str]:
        """Product ids the customer bought in the fitted interactions."""
        pos = position(self.customer_pos_, customer_id)
        if pos < 0:
            return set()
        m = self.matrix_
        return {str(self.items_[j]) for j in m.indices[m.indptr[pos]:m.indptr[pos + 1]]}

    def recommend(self, customer_id: str, k: int = 10,
                  exclude: Iterable[str] = frozenset()) -> list[tuple[str, float]]:
        """Up to ``k`` ``(product_id, score)`` pairs, best first, none of them in ``exclude``."""
        self._check_fitted()
        return top_k(self.items_, self.scores(customer_id), k, exclude)
