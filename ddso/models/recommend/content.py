"""Content-based recommendations: a customer profile over item vectors, scored by cosine.

The text of a product is its ``name``, ``description`` and, where the products frame has them,
``category_name``, ``subcategory_name`` and ``brand_name`` (see
:func:`ddso.models.recommend.evaluate.catalogue`). A customer's profile is the weighted mean of
the (L2-normalised) vectors of the items they bought; items score their cosine to it.

:class:`ContentTfidf` uses sparse TF-IDF vectors of that text. :class:`ItemVectors` is the same
idea for dense vectors learned elsewhere (sentence embeddings in
:mod:`ddso.models.recommend.text`, item2vec in :mod:`ddso.models.recommend.item2vec`), with
recent purchases weighing more and every profile computed at fit time, so that a request costs
one matrix-vector product. Blend either with the others in
:class:`ddso.models.recommend.hybrid.Hybrid`.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from ddso.errors import UserError
from ddso.models.recommend.base import Recommender, position, top_k

TEXT_COLUMNS = ("name", "description", "category_name", "subcategory_name", "brand_name")


def product_text(products: pd.DataFrame) -> pd.Series:
    """One string per product: its text columns joined, missing ones skipped."""
    columns = [c for c in TEXT_COLUMNS if c in products.columns]
    if not columns:
        return pd.Series("", index=products.index)
    return products[columns].astype("string").fillna("").agg(" ".join, axis=1)


class ContentTfidf(Recommender):
    """TF-IDF content model. ``vectorizer_`` is the fitted sklearn vectorizer and ``vectors_``
    the items x terms CSR matrix (rows L2-normalised; empty for items without text)."""

    def __init__(self, min_df: int = 1, ngram_range: tuple[int, int] = (1, 1),
                 stop_words: str | None = "english"):
        self.min_df = min_df
        self.ngram_range = ngram_range
        self.stop_words = stop_words

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        text = pd.Series(product_text(products).to_numpy(),
                         index=products["product_id"].astype(str))
        text = text[~text.index.duplicated()].reindex(self.item_pos_, fill_value="")
        self.vectorizer_ = TfidfVectorizer(min_df=self.min_df, ngram_range=self.ngram_range,
                                           stop_words=self.stop_words, sublinear_tf=True)
        self.vectors_ = self.vectorizer_.fit_transform(text.to_numpy()).tocsr()

    def profile(self, customer_id: str) -> np.ndarray | None:
        """The customer's profile (terms, L2-normalised, dense), or None without history.

        Dense and normalised by hand: a request is then one sparse product for the profile
        and one matrix-vector product for the scores (sklearn's ``normalize`` and a sparse
        result cost ~1 ms of overhead a request).
        """
        row = self.history(customer_id)
        if row is None or row.nnz == 0:
            return None
        prof = (row @ self.vectors_).toarray().ravel()
        norm = np.linalg.norm(prof)
        return None if norm == 0 else prof / norm

    def scores(self, customer_id: str) -> np.ndarray:
        prof = self.profile(customer_id)
        if prof is None:
            return np.full(len(self.items_), np.nan)
        out = self.vectors_ @ prof
        return np.where(out > 0, out, np.nan)


def recency_weights(interactions: pd.DataFrame, half_life_days: float | None) -> np.ndarray:
    """Each line's ``weight`` halved for every ``half_life_days`` it lies before the last line
    (None: no decay). Profiles are normalised, so only the ratios between lines matter."""
    weight = interactions["weight"].to_numpy(dtype=float)
    if half_life_days is None or len(interactions) == 0:
        return weight
    age = (interactions["time"].max() - interactions["time"]) / pd.Timedelta(days=1)
    return weight * np.exp2(-age.to_numpy(dtype=float) / half_life_days)


class ItemVectors(Recommender):
    """Dense content model over the item vectors a subclass supplies in :meth:`_item_vectors`.

    ``vectors_`` is the items x dims float32 matrix (rows L2-normalised; all zero for an item
    without a vector, which then scores NaN), ``profiles_`` the customers x dims matrix of
    L2-normalised profiles: each customer's purchases weighted by quantity and by
    ``half_life_days`` of recency (see :func:`recency_weights`). A customer unknown at fit time
    gets NaN everywhere ("no opinion"; :class:`~ddso.models.recommend.hybrid.Hybrid` then falls
    back to trending).
    """

    def __init__(self, half_life_days: float | None = 90.0):
        self.half_life_days = half_life_days

    @abstractmethod
    def _item_vectors(self, interactions: pd.DataFrame, products: pd.DataFrame) -> np.ndarray:
        """One row per item of ``items_``; an all-zero row where the item has no vector."""

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        vectors = np.asarray(self._item_vectors(interactions, products), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(self.items_):
            raise UserError(f"{type(self).__name__} made item vectors of shape {vectors.shape};"
                            f" expected ({len(self.items_)}, dims), one row per item of items_")
        self.vectors_ = normalize(vectors).astype(np.float32)
        self.known_ = self.vectors_.any(axis=1)
        rows = self.customer_pos_.get_indexer(interactions["customer_id"].astype(str))
        cols = self.item_pos_.get_indexer(interactions["product_id"].astype(str))
        recent = sp.csr_matrix((recency_weights(interactions, self.half_life_days), (rows, cols)),
                               shape=self.matrix_.shape)
        self.profiles_ = normalize(recent @ self.vectors_).astype(np.float32)

    def scores(self, customer_id: str) -> np.ndarray:
        self._check_fitted()
        pos = position(self.customer_pos_, customer_id)
        if pos < 0 or not self.profiles_[pos].any():
            return np.full(len(self.items_), np.nan)
        return np.where(self.known_, self.vectors_ @ self.profiles_[pos], np.nan)

    def similar_items(self, item: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` items nearest to ``item`` by cosine, best first, ``item`` itself left out
        (exact: one matrix-vector product over ``vectors_``). Empty for an item without a
        vector; :class:`UserError` for an id the model was not fitted with."""
        self._check_fitted()
        pos = position(self.item_pos_, item)
        if pos < 0:
            raise UserError(f"item {item!r} is not in the fitted catalogue of "
                            f"{type(self).__name__}; fit on products that include it")
        if not self.known_[pos]:
            return []
        sims = np.where(self.known_, self.vectors_ @ self.vectors_[pos], np.nan)
        return top_k(self.items_, sims, k, exclude=(item,))
