"""Wide & Deep (Cheng et al., 2016): a wide linear part over crossed features that memorises
co-occurrences, plus a deep part that generalises over customer, product-hierarchy and
context features, trained jointly (their logits add).

Every training example is a purchase line seen from just before its basket: the context is
what the customer had bought strictly earlier (point in time, so a basket never explains
itself), and the positive is the item bought.

- Context (one row per moment): ``user`` (position in ``customers_`` plus one; 0 unknown),
  ``last`` (the last item bought before, plus one; 0 none), ``categories`` (items bought
  before, per category of ``hierarchy[0]``) and ``context`` (log1p of the baskets before and
  of the days since the last one).
- Wide: a bias per item; owned category x item category (one weight per pair, for every
  category owned); last item x item, hashed into ``cross_buckets`` weights (exact while
  ``(items + 1) * items <= cross_buckets``).
- Deep: embeddings of the customer, of the last item, log1p of the category counts and the
  context on one side; of the item and of its ``hierarchy`` levels (category, subcategory,
  brand) on the other; a ReLU tower over their sum after one linear map each (the item side
  of which is computed once per fit: :meth:`WideDeepNet.item_table`).

A customer unseen at fit time is scored as one with no history (a valid context: every
customer's first basket was learnt from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ddso.errors import UserError
from ddso.models.recommend.deep import DeepRecommender, _csr
from ddso.models.recommend.deep_training import Examples, Training
from ddso.models.recommend.ncf import tower

DAY_NS = 86_400 * 10**9
N_CONTEXT = 2


def _ns(times: pd.Series) -> np.ndarray:
    return times.dt.as_unit("ns").astype("int64").to_numpy()


def purchase_history(customer: np.ndarray, item: np.ndarray, category: np.ndarray,
                     time: np.ndarray, n_categories: int, at_customer: np.ndarray,
                     at_time: np.ndarray) -> dict[str, np.ndarray]:
    """What customer ``at_customer[q]`` had bought strictly before ``at_time[q]``, from the
    lines (``customer``, ``item``, its ``category``, ``time`` in ns): ``last`` (item + 1, 0
    for none), ``categories`` (counts) and ``context`` (log1p of the baskets, one per
    distinct line time, and of the days since the last)."""
    n_lines = len(customer)
    c = np.r_[customer, at_customer].astype(np.int64)
    t = np.r_[time, at_time].astype(np.int64)
    is_line = np.r_[np.ones(n_lines, bool), np.zeros(len(at_customer), bool)]
    order = np.lexsort((is_line, t, c))  # a query sorts before the lines of its own time
    c, t, is_line = c[order], t[order], is_line[order]
    n = len(order)
    at = np.arange(n)
    group_start = np.maximum.accumulate(np.where(np.r_[True, c[1:] != c[:-1]], at, 0))
    last = np.maximum.accumulate(np.where(is_line, at, -1))  # last line at or before
    prev = np.r_[-1, last[:-1]]
    has_prev = prev >= group_start

    def within(values: np.ndarray) -> np.ndarray:
        total = np.cumsum(values, 0)
        base = np.where((group_start > 0).reshape(-1, *[1] * (values.ndim - 1)),
                        total[group_start - 1], 0)
        return total - base

    line_of = np.full(n, -1)
    line_of[is_line] = order[is_line]  # row -> its index among the lines
    onehot = np.zeros((n, n_categories), np.float32)
    onehot[is_line, category[line_of[is_line]]] = 1.0
    new_basket = is_line & ~(has_prev & (t[np.maximum(prev, 0)] == t))
    queries = np.empty(len(at_customer), np.int64)
    queries[order[~is_line] - n_lines] = np.flatnonzero(~is_line)
    before = prev[queries]
    known = has_prev[queries]
    days = np.where(known, (t[queries] - t[np.maximum(before, 0)]) / DAY_NS, 0.0)
    return {
        "last": np.where(known, item[line_of[np.maximum(before, 0)]] + 1, 0).astype(np.int64),
        "categories": within(onehot)[queries],
        "context": np.c_[np.log1p(within(new_basket.astype(np.int64))[queries]),
                         np.log1p(np.maximum(days, 0.0))].astype(np.float32),
    }


class WideDeepNet(nn.Module):
    """The joint wide and deep parts (module docstring). ``item_codes`` (items x levels)
    are the items' codes in each level of the hierarchy, the first level crossed."""

    def __init__(self, n_users: int, n_items: int, item_codes: np.ndarray, dim: int = 16,
                 hidden: Sequence[int] = (64, 32), cross_buckets: int = 2**18):
        super().__init__()
        codes = torch.as_tensor(np.asarray(item_codes), dtype=torch.long)
        self.register_buffer("codes", codes, persistent=False)
        sizes = [int(s) for s in codes.max(0).values + 1]
        self.n_items, self.cross_buckets = n_items, cross_buckets
        self.item = nn.Embedding(n_items, dim)
        self.levels = nn.ModuleList(nn.Embedding(s, dim) for s in sizes)
        self.item_in = nn.Linear(dim * (1 + len(sizes)), hidden[0], bias=False)
        self.user = nn.Embedding(n_users + 1, dim, padding_idx=0)
        self.last = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.context_in = nn.Linear(2 * dim + sizes[0] + N_CONTEXT, hidden[0])
        self.tower = tower(hidden)
        self.head = nn.Linear(hidden[-1], 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.category_cross = nn.Parameter(torch.zeros(sizes[0], sizes[0]))
        self.item_cross = nn.Embedding(cross_buckets, 1)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.item_cross.weight)

    def item_table(self) -> torch.Tensor:
        """Per item: the item side of the deep part's first layer."""
        levels = [e(self.codes[:, j]) for j, e in enumerate(self.levels)]
        return self.item_in(torch.cat([self.item.weight, *levels], 1))

    def forward(self, context: dict[str, torch.Tensor], items: torch.Tensor,
                table: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (rows x n) of ``items`` (rows x n) for the context rows."""
        counts, last = context["categories"], context["last"]
        customer = self.context_in(torch.cat(
            [self.user(context["user"]), self.last(last), torch.log1p(counts),
             context["context"]], 1))
        t = (self.item_table() if table is None else table)[items]
        deep = self.head(self.tower(customer[:, None, :] + t)).squeeze(-1)
        owned = (counts > 0).float() @ self.category_cross  # rows x item categories
        pairs = (last[:, None] * self.n_items + items) % self.cross_buckets
        wide = (self.item_bias(items).squeeze(-1) + owned.gather(1, self.codes[items, 0])
                + self.item_cross(pairs).squeeze(-1))
        return deep + wide


TRAINING = Training(run_name="wide_deep")
"""The default training of :class:`WideDeep` (see :class:`Training`)."""


class WideDeep(DeepRecommender):
    """Wide & Deep over purchase histories (module docstring); ``hierarchy`` names the
    products' columns embedded in the deep part, the first also crossed in the wide part.
    Scores are logits."""

    module_class = WideDeepNet

    def __init__(self, dim: int = 16, hidden: Sequence[int] = (64, 32),
                 cross_buckets: int = 2**18,
                 hierarchy: Sequence[str] = ("category_id", "subcategory_id", "brand_id"),
                 training: Training = TRAINING):
        self.dim = dim
        self.hidden = hidden
        self.cross_buckets = cross_buckets
        self.hierarchy = hierarchy
        self.training = training

    def _module_config(self, products: pd.DataFrame) -> dict[str, Any]:
        missing = [c for c in self.hierarchy if c not in products.columns]
        if missing:
            raise UserError(f"WideDeep reads product columns {list(self.hierarchy)}; the "
                            f"products lack {missing}: add them or pass hierarchy=")
        aligned = (products.assign(product_id=products["product_id"].astype(str))
                   .drop_duplicates("product_id").set_index("product_id")
                   .reindex(self.item_pos_))
        codes = np.stack([pd.factorize(aligned[c].astype("string").fillna("?"), sort=True)[0]
                          for c in self.hierarchy], 1).astype(np.int64)
        return {"n_users": len(self.customers_), "n_items": len(self.items_),
                "item_codes": codes, "dim": self.dim, "hidden": tuple(int(h) for h in self.hidden),
                "cross_buckets": self.cross_buckets}

    def _history(self, interactions: pd.DataFrame, customers: np.ndarray,
                 times: np.ndarray) -> dict[str, np.ndarray]:
        codes = self.module_config_["item_codes"]
        item = self.item_pos_.get_indexer(interactions["product_id"].astype(str))
        return purchase_history(
            self.customer_pos_.get_indexer(interactions["customer_id"].astype(str)), item,
            codes[item, 0], _ns(interactions["time"]), int(codes[:, 0].max()) + 1, customers,
            times)

    def _examples(self, interactions: pd.DataFrame) -> Examples:
        customer = self.customer_pos_.get_indexer(interactions["customer_id"].astype(str))
        baskets = pd.DataFrame({"c": customer, "t": _ns(interactions["time"])})
        row, unique = pd.MultiIndex.from_frame(baskets).factorize()
        at_c = unique.get_level_values(0).to_numpy(np.int64)
        context = self._history(interactions, at_c, unique.get_level_values(1).to_numpy())
        return Examples(context={"user": at_c + 1, **context}, row=row.astype(np.int64),
                        item=self.item_pos_.get_indexer(interactions["product_id"].astype(str)),
                        customer=customer.astype(np.int64),
                        bought=_csr(interactions, self.customer_pos_, self.item_pos_))

    def _contexts(self, interactions: pd.DataFrame, customers: np.ndarray,
                  at: pd.Timestamp) -> dict[str, np.ndarray]:
        customers = np.asarray(customers, dtype=np.int64)
        times = np.full(len(customers), pd.Timestamp(at).as_unit("ns").value, dtype=np.int64)
        return {"user": customers + 1, **self._history(interactions, customers, times)}

    def _cold_context(self) -> dict[str, np.ndarray]:
        n_categories = int(self.module_config_["item_codes"][:, 0].max()) + 1
        return {"user": np.int64(0), "last": np.int64(0),
                "categories": np.zeros(n_categories, np.float32),
                "context": np.zeros(N_CONTEXT, np.float32)}
