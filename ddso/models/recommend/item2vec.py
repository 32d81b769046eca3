"""Item2vec: word2vec's skip-gram with negative sampling over purchase sequences.

Each customer's purchases, ordered by time, are a sentence whose words are products; items
bought within ``window`` places of each other are pulled together and ``negatives`` items drawn
from the unigram distribution raised to 3/4 are pushed away (Mikolov et al. 2013; Barkan and
Koenigstein 2016). Training is minibatch Adam in numpy, seeded: two fits on the same data and
machine give the same vectors. :class:`Item2VecRecommender` scores with them as a content model
(:class:`~ddso.models.recommend.content.ItemVectors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ddso.errors import NotFittedError, UserError
from ddso.models.recommend.base import check_interactions
from ddso.models.recommend.content import ItemVectors


def purchase_sequences(interactions: pd.DataFrame, items: pd.Index) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Positions in ``items`` of every purchase, ordered by customer, then time (then basket
    and product, so that ties are broken the same way every time), and each one's customer
    code. Products missing from ``items`` are dropped."""
    order = [c for c in ("customer_id", "time", "basket_id", "product_id")
             if c in interactions.columns]
    lines = interactions.assign(customer_id=interactions["customer_id"].astype(str),
                                product_id=interactions["product_id"].astype(str))
    lines = lines.sort_values(order, kind="stable")
    tokens = items.get_indexer(lines["product_id"])
    owner = pd.factorize(lines["customer_id"])[0]
    keep = tokens >= 0
    return tokens[keep], owner[keep]


def skipgram_pairs(tokens: np.ndarray, owner: np.ndarray,
                   window: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs of tokens at most ``window`` apart within one owner's
    sequence, in both directions; an item is never its own context."""
    centre, context = [], []
    for offset in range(1, window + 1):
        same = owner[offset:] == owner[:-offset]
        a, b = tokens[:-offset][same], tokens[offset:][same]
        differ = a != b
        centre += [a[differ], b[differ]]
        context += [b[differ], a[differ]]
    if not centre:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(centre).astype(np.int64), np.concatenate(context).astype(np.int64)


class Item2Vec:
    """Skip-gram item vectors. ``items_`` are the item ids, ``vectors_`` the items x ``dims``
    float32 sums of each item's input and output vectors (all zero for an item bought fewer
    than ``min_count`` times or with no neighbour in any sequence), ``counts_`` the purchases
    per item and ``losses_`` the mean training loss of each epoch.

    Input vectors alone are near for items with similar neighbours (second order); adding the
    output vectors makes items bought next to each other near too (first order, as GloVe does),
    which is the "bought in sequence" relation wanted here: two items only ever bought with
    each other are far apart in input vectors alone.
    """

    def __init__(self, dims: int = 32, window: int = 5, negatives: int = 5, epochs: int = 5,
                 batch_size: int = 256, learning_rate: float = 0.01, min_count: int = 1,
                 seed: int = 0):
        self.dims = dims
        self.window = window
        self.negatives = negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.min_count = min_count
        self.seed = seed

    def fit(self, interactions: pd.DataFrame, items: Sequence[str] | None = None) -> Self:
        """Learn vectors for ``items`` (default: every product in ``interactions``, sorted)."""
        check_interactions(interactions)
        if min(self.window, self.dims, self.negatives, self.batch_size, self.epochs) < 1:
            raise UserError("Item2Vec needs window, dims, negatives, batch_size and epochs >= 1;"
                            f" got {self.window}, {self.dims}, {self.negatives}, {self.batch_size},"
                            f" {self.epochs}; raise the bad one")
        index = pd.Index(np.unique(interactions["product_id"].astype(str)) if items is None
                         else pd.Index(items).astype(str))
        tokens, owner = purchase_sequences(interactions, index)
        self.items_ = np.asarray(index, dtype=object)
        self.counts_ = np.bincount(tokens, minlength=len(index))
        frequent = self.counts_ >= self.min_count
        keep = frequent[tokens]
        centre, context = skipgram_pairs(tokens[keep], owner[keep], self.window)
        trained = np.zeros(len(index), dtype=bool)
        trained[centre] = True
        self.vectors_, self.losses_ = self._train(centre, context, np.where(frequent,
                                                                            self.counts_, 0))
        self.vectors_[~trained] = 0.0
        return self

    def _train(self, centre: np.ndarray, context: np.ndarray,
               counts: np.ndarray) -> tuple[np.ndarray, list[float]]:
        rng = np.random.default_rng(self.seed)
        n, d, k = len(counts), self.dims, self.negatives
        w_in = ((rng.random((n, d)) - 0.5) / d).astype(np.float32)
        w_out = np.zeros((n, d), dtype=np.float32)
        if len(centre) == 0:
            return w_in, []
        noise = counts.astype(float) ** 0.75
        noise_cdf = np.cumsum(noise / noise.sum())
        adam = _Adam((w_in, w_out), self.learning_rate)
        losses = []
        for _ in range(self.epochs):
            order = rng.permutation(len(centre))
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                b = len(batch)
                c, o = centre[batch], context[batch]
                neg = np.minimum(np.searchsorted(noise_cdf, rng.random((b, k))), n - 1)
                v, u, z = w_in[c], w_out[o], w_out[neg]
                pos = (v * u).sum(1)
                negs = np.einsum("bkd,bd->bk", z, v)
                total += float(np.logaddexp(0, -pos).sum() + np.logaddexp(0, negs).sum())
                # d loss / d score: sigmoid(s) - 1 for the true context, sigmoid(s) for noise
                g_pos = (_sigmoid(pos) - 1.0) / b
                g_neg = _sigmoid(negs) / b
                grad_in = _scatter_sum(c, g_pos[:, None] * u + np.einsum("bk,bkd->bd", g_neg, z),
                                       n)
                grad_out = _scatter_sum(np.concatenate([o, neg.ravel()]), np.concatenate(
                    [g_pos[:, None] * v, (g_neg[:, :, None] * v[:, None, :]).reshape(-1, d)]), n)
                adam.step((grad_in, grad_out))
            losses.append(total / len(order))
        return w_in + w_out, losses

    def similarity(self, a: str, b: str) -> float:
        """Cosine of the vectors of items ``a`` and ``b`` (0 when either has none)."""
        if not hasattr(self, "vectors_"):
            raise NotFittedError("Item2Vec is not fitted yet; call fit(interactions) first")
        pos = pd.Index(self.items_).get_indexer([a, b])
        if (pos < 0).any():
            raise UserError(f"items {[a, b]} are not all among the {len(self.items_)} fitted "
                            "items; fit with items= that include them")
        u, v = self.vectors_[pos]
        norm = float(np.linalg.norm(u) * np.linalg.norm(v))
        return float(u @ v) / norm if norm else 0.0


class Item2VecRecommender(ItemVectors):
    """Content model over :class:`Item2Vec` vectors learned from the training purchases.

    Items nobody bought (at least ``min_count`` times) have no vector and score NaN. ``model_``
    is the fitted :class:`Item2Vec`; the other arguments are its own, and ``half_life_days``
    as in :class:`~ddso.models.recommend.content.ItemVectors`.
    """

    def __init__(self, dims: int = 32, window: int = 5, negatives: int = 5, epochs: int = 5,
                 min_count: int = 1, seed: int = 0, half_life_days: float | None = 90.0):
        super().__init__(half_life_days)
        self.dims = dims
        self.window = window
        self.negatives = negatives
        self.epochs = epochs
        self.min_count = min_count
        self.seed = seed

    def _item_vectors(self, interactions: pd.DataFrame, products: pd.DataFrame) -> np.ndarray:
        self.model_ = Item2Vec(dims=self.dims, window=self.window, negatives=self.negatives,
                               epochs=self.epochs, min_count=self.min_count,
                               seed=self.seed).fit(interactions, self.items_)
        return self.model_.vectors_


def _scatter_sum(index: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``n`` x dims sums of ``rows`` by ``index`` (a sparse product: np.add.at is ~10x slower)."""
    onehot = sp.csr_matrix((np.ones(len(index), dtype=rows.dtype), (index, np.arange(len(index)))),
                           shape=(n, len(index)))
    return onehot @ rows


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Adam:
    """Adam (Kingma and Ba 2014) on numpy arrays, updated in place."""

    def __init__(self, params: tuple[np.ndarray, ...], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: tuple[np.ndarray, ...]) -> None:
        self.t += 1
        b1, b2 = self.betas
        scale = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= (scale * m / (np.sqrt(v) + self.eps)).astype(p.dtype)
