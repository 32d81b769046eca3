"""Association rules between pairs of items, mined from baskets (one sale = one basket).

For a rule ``A -> B`` over ``n`` baskets: ``support = n(A and B) / n``, ``confidence =
n(A and B) / n(A)`` and ``lift = confidence / (n(B) / n)``. A customer is recommended the
consequents of the rules whose antecedents they bought, scored by the best such confidence
(ties broken by lift).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ddso.models.recommend.base import Recommender


def basket_matrix(interactions: pd.DataFrame, items: pd.Index) -> sp.csr_matrix:
    """Baskets x items, 1 where the basket holds the item. Baskets are ``basket_id`` when the
    interactions have it, else one per customer and timestamp."""
    keys = (["basket_id"] if "basket_id" in interactions.columns
            else ["customer_id", "time"])
    basket = interactions.groupby(keys, sort=False).ngroup().to_numpy()
    cols = items.get_indexer(interactions["product_id"].astype(str))
    m = sp.csr_matrix((np.ones(len(basket)), (basket, cols)),
                      shape=(int(basket.max()) + 1 if len(basket) else 0, len(items)))
    m.data[:] = 1.0  # an item listed twice in one basket still counts once
    return m


def pair_rules(baskets: sp.csr_matrix, items: np.ndarray, min_support: float = 0.0,
               min_confidence: float = 0.0, min_count: int = 1) -> pd.DataFrame:
    """All rules ``antecedent -> consequent`` between two items meeting the thresholds."""
    n = baskets.shape[0]
    counts = np.asarray(baskets.sum(axis=0)).ravel()
    pairs = (baskets.T @ baskets).tocoo()
    off = pairs.row != pairs.col
    a, b, both = pairs.row[off], pairs.col[off], pairs.data[off]
    support = both / max(n, 1)
    confidence = both / counts[a]
    lift = confidence / (counts[b] / n)
    keep = (support >= min_support) & (confidence >= min_confidence) & (both >= min_count)
    rules = pd.DataFrame({"antecedent": items[a[keep]], "consequent": items[b[keep]],
                          "count": both[keep].astype(int), "support": support[keep],
                          "confidence": confidence[keep], "lift": lift[keep]})
    return rules.sort_values(["confidence", "lift", "antecedent", "consequent"],
                             ascending=[False, False, True, True], ignore_index=True)


class AssociationRules(Recommender):
    """Pair rules from baskets. ``rules_`` is the rule table; ``confidence_`` and ``lift_``
    are items x items sparse matrices (antecedent row, consequent column)."""

    def __init__(self, min_support: float = 0.0001, min_confidence: float = 0.01,
                 min_count: int = 2):
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.min_count = min_count

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        baskets = basket_matrix(interactions, self.item_pos_)
        self.baskets_ = baskets.shape[0]
        self.rules_ = pair_rules(baskets, self.items_, self.min_support, self.min_confidence,
                                 self.min_count)
        a = self.item_pos_.get_indexer(self.rules_["antecedent"])
        b = self.item_pos_.get_indexer(self.rules_["consequent"])
        shape = (len(self.items_), len(self.items_))
        self.confidence_ = sp.csr_matrix((self.rules_["confidence"].to_numpy(), (a, b)), shape)
        self.lift_ = sp.csr_matrix((self.rules_["lift"].to_numpy(), (a, b)), shape)

    def scores(self, customer_id: str) -> np.ndarray:
        row = self.history(customer_id)
        if row is None or row.nnz == 0:
            return np.full(len(self.items_), np.nan)
        conf = self.confidence_[row.indices].max(axis=0).toarray().ravel()
        lift = self.lift_[row.indices].max(axis=0).toarray().ravel()
        # lift only breaks ties: it is squashed below the smallest confidence step
        out = conf + 1e-6 * lift / (1.0 + lift)
        return np.where(conf > 0, out, np.nan)
