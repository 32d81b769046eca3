"""Neural collaborative filtering (He et al., 2017, "NeuMF"): customer and item embeddings
combined by a generalised matrix factorisation (their element-wise product) and by a
non-linear tower over both, the two joined by one output layer.

The tower's first layer is split into a customer half and an item half (the same linear map
of the concatenated embeddings), so the item half of every item is computed once for all
customers: :meth:`NeuMF.item_table`. The context is the customer's index alone (``user``:
its position in ``customers_`` plus one; 0 is "unknown"), so a customer the model has not
seen gets the popularity ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ddso.models.recommend.deep import DeepRecommender, _csr
from ddso.models.recommend.deep_training import Examples, Training


def tower(sizes: Sequence[int]) -> nn.Sequential:
    """ReLU, then Linear and ReLU between each pair of ``sizes``: the hidden layers after
    the (split) first one."""
    layers: list[nn.Module] = [nn.ReLU()]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class NeuMF(nn.Module):
    """GMF and MLP towers over ``dim``-wide embeddings; ``hidden`` are the MLP's widths."""

    def __init__(self, n_users: int, n_items: int, dim: int = 32,
                 hidden: Sequence[int] = (64, 32)):
        super().__init__()
        self.dim = dim
        self.user_gmf = nn.Embedding(n_users + 1, dim, padding_idx=0)
        self.user_mlp = nn.Embedding(n_users + 1, dim, padding_idx=0)
        self.item_gmf = nn.Embedding(n_items, dim)
        self.item_mlp = nn.Embedding(n_items, dim)
        for e in (self.user_gmf, self.user_mlp, self.item_gmf, self.item_mlp):
            nn.init.normal_(e.weight, std=0.05)
            if e.padding_idx is not None:
                e.weight.data[e.padding_idx] = 0.0
        self.user_in = nn.Linear(dim, hidden[0])
        self.item_in = nn.Linear(dim, hidden[0], bias=False)
        self.tower = tower(hidden)
        self.out = nn.Linear(dim + hidden[-1], 1)

    def item_table(self) -> torch.Tensor:
        """Per item: its GMF embedding, then its half of the first tower layer."""
        return torch.cat([self.item_gmf.weight, self.item_in(self.item_mlp.weight)], 1)

    def forward(self, context: dict[str, torch.Tensor], items: torch.Tensor,
                table: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (rows x n) of ``items`` (rows x n) for the ``context["user"]`` rows."""
        t = (self.item_table() if table is None else table)[items]
        user = context["user"]
        gmf = self.user_gmf(user)[:, None, :] * t[..., : self.dim]
        mlp = self.tower(self.user_in(self.user_mlp(user))[:, None, :] + t[..., self.dim :])
        return self.out(torch.cat([gmf, mlp], -1)).squeeze(-1)


TRAINING = Training(run_name="ncf")
"""The default training of :class:`NeuralCF` (see :class:`Training`)."""


class NeuralCF(DeepRecommender):
    """NeuMF trained on the distinct (customer, item) pairs bought, with sampled negatives.

    Scores are logits; customers unknown at fit time get ``popularity_``.
    """

    module_class = NeuMF

    def __init__(self, dim: int = 32, hidden: Sequence[int] = (64, 32),
                 training: Training = TRAINING):
        self.dim = dim
        self.hidden = hidden
        self.training = training

    def _module_config(self, products: pd.DataFrame) -> dict[str, Any]:
        return {"n_users": len(self.customers_), "n_items": len(self.items_), "dim": self.dim,
                "hidden": tuple(int(h) for h in self.hidden)}

    def _examples(self, interactions: pd.DataFrame) -> Examples:
        bought = _csr(interactions, self.customer_pos_, self.item_pos_).tocoo()
        return Examples(context={"user": np.arange(len(self.customers_), dtype=np.int64) + 1},
                        row=bought.row.astype(np.int64), item=bought.col.astype(np.int64),
                        customer=bought.row.astype(np.int64), bought=bought.tocsr())

    def _contexts(self, interactions: pd.DataFrame, customers: np.ndarray,
                  at: pd.Timestamp) -> dict[str, np.ndarray]:
        return {"user": np.asarray(customers, dtype=np.int64) + 1}
