"""Content-based recommendations from TF-IDF over each product's text.

The text of a product is its ``name``, ``description`` and, where the products frame has them,
``category_name``, ``subcategory_name`` and ``brand_name`` (see
:func:`ddso.models.recommend.evaluate.catalogue`). A customer's profile is the weighted mean of
the (L2-normalised) vectors of the items they bought; items score their cosine to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from ddso.models.recommend.base import Recommender

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

    def profile(self, customer_id: str):
        """The customer's profile (1 x terms, L2-normalised), or None without history."""
        row = self.history(customer_id)
        if row is None or row.nnz == 0:
            return None
        return normalize(row @ self.vectors_)

    def scores(self, customer_id: str) -> np.ndarray:
        prof = self.profile(customer_id)
        if prof is None:
            return np.full(len(self.items_), np.nan)
        out = (self.vectors_ @ prof.T).toarray().ravel()
        return np.where(out > 0, out, np.nan)
