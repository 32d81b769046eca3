"""Neighbourhood collaborative filtering: item-item and user-user, top-N neighbours kept.

Similarities between the rows of a sparse matrix (items x customers for item-item, customers x
items for user-user), computed block by block so that only the kept neighbours are ever held:

- ``cosine``: cosine of the weight vectors.
- ``pearson``: Pearson correlation over the co-rated entries only, each row centred on the mean
  of its own ratings; undefined (hence 0) where a row has no spread.
- ``jaccard``: |A and B| / |A or B| of the binarised rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from ddso.errors import UserError
from ddso.models.recommend.base import Recommender, position

Similarity = Literal["cosine", "pearson", "jaccard"]
SIMILARITIES = ("cosine", "pearson", "jaccard")


def _centred(m: sp.csr_matrix) -> sp.csr_matrix:
    counts = np.diff(m.indptr)
    means = np.asarray(m.sum(axis=1)).ravel() / np.maximum(counts, 1)
    out = m.copy().astype(float)
    out.data -= np.repeat(means, counts)
    return out


def _keep_top(s: sp.csr_matrix, n: int, offset: int) -> sp.csr_matrix:
    """Drop self-similarity and non-positive entries; keep the ``n`` largest per row."""
    s = s.tocoo()
    keep = (s.data > 0) & (s.row + offset != s.col)
    s = sp.csr_matrix((s.data[keep], (s.row[keep], s.col[keep])), shape=s.shape)
    for r in range(s.shape[0]):
        lo, hi = s.indptr[r], s.indptr[r + 1]
        if hi - lo > n:
            row = s.data[lo:hi]
            row[np.argsort(-row, kind="stable")[n:]] = 0
    s.eliminate_zeros()
    return s


def similarity(m: sp.csr_matrix, kind: Similarity = "cosine", neighbours: int = 50,
               block: int = 2048) -> sp.csr_matrix:
    """Row x row similarity of ``m``, keeping the ``neighbours`` most similar rows per row."""
    if kind not in SIMILARITIES:
        raise UserError(f"similarity {kind!r} is unknown; choose one of {', '.join(SIMILARITIES)}")
    m = sp.csr_matrix(m, dtype=float)
    binary = m.copy()
    binary.data[:] = 1.0
    if kind == "cosine":
        left = right = normalize(m)
    elif kind == "jaccard":
        left = right = binary
        sizes = np.asarray(binary.sum(axis=1)).ravel()
    else:
        left = right = _centred(m)
        squares = left.multiply(left).tocsr()
    blocks = []
    for start in range(0, m.shape[0], block):
        stop = min(start + block, m.shape[0])
        s = (left[start:stop] @ right.T).tocoo()
        if kind == "jaccard":
            s.data = s.data / (sizes[start + s.row] + sizes[s.col] - s.data)
        elif kind == "pearson":
            # sum over co-rated entries of the squared deviations of each side
            own = (squares[start:stop] @ binary.T).tocsr()[s.row, s.col]
            other = (binary[start:stop] @ squares.T).tocsr()[s.row, s.col]
            den = np.sqrt(np.asarray(own).ravel() * np.asarray(other).ravel())
            s.data = np.divide(s.data, den, out=np.zeros_like(s.data), where=den > 0)
        blocks.append(_keep_top(s.tocsr(), neighbours, start))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((m.shape[0], m.shape[0]))


class ItemCF(Recommender):
    """Item-item CF: an item scores the sum of its similarities to the customer's items,
    weighted by how much the customer bought of each.

    ``similarity_`` is the items x items matrix of kept neighbours.
    """

    def __init__(self, similarity: Similarity = "cosine", neighbours: int = 50):
        self.similarity = similarity
        self.neighbours = neighbours

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        self.similarity_ = similarity(self.matrix_.T.tocsr(), self.similarity, self.neighbours)

    def scores(self, customer_id: str) -> np.ndarray:
        row = self.history(customer_id)
        if row is None:
            return np.full(len(self.items_), np.nan)
        # similarity_ keeps each item's neighbours in its row; score item i from its row
        out = self.similarity_ @ row.toarray().ravel()  # dense vector: one product
        return np.where(out > 0, out, np.nan)


class UserCF(Recommender):
    """User-user CF: an item scores the similarity-weighted purchases of the customer's
    ``neighbours`` most similar customers. ``similarity_`` is customers x customers."""

    def __init__(self, similarity: Similarity = "cosine", neighbours: int = 50):
        self.similarity = similarity
        self.neighbours = neighbours

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        self.similarity_ = similarity(self.matrix_, self.similarity, self.neighbours)

    def scores(self, customer_id: str) -> np.ndarray:
        self._check_fitted()
        pos = position(self.customer_pos_, customer_id)
        if pos < 0:
            return np.full(len(self.items_), np.nan)
        out = np.asarray((self.similarity_[pos] @ self.matrix_).todense()).ravel()
        return np.where(out > 0, out, np.nan)
