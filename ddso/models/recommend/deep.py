"""The base of the neural recommenders (:class:`~ddso.models.recommend.ncf.NeuralCF`,
:class:`~ddso.models.recommend.wide_deep.WideDeep`): fitting through Ray Train, fast
single-customer scoring, and saving to (and loading from) a folder or a registry version.

A subclass names its torch module and says how to describe customers (see
:mod:`~ddso.models.recommend.deep_training` for the context contract):

- ``_module_config(products)``: the module's constructor arguments (numbers, tuples or
  1-D arrays);
- ``_examples(interactions)``: the positives of these interactions and their contexts;
- ``_contexts(interactions, customers, at)``: the contexts of customer rows at time ``at``,
  from the interactions before it;
- ``_cold_context()``: the context of a customer the model has never seen, or None to fall
  back on popularity.

Fitting holds out the last ``training.valid_share`` of the interactions (by time) to choose
the number of epochs, then trains (see :mod:`~ddso.models.recommend.deep_training`). Serving
precomputes the item side of the module and every known customer's context as of the end of
the training data: a request is one small forward pass over the items.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ddso.errors import UserError
from ddso.models.recommend.base import Recommender
from ddso.models.recommend.deep_training import (
    STATE_FILE,
    Examples,
    Training,
    Validation,
    as_tensors,
    fit_with_ray_train,
)
from ddso.models.recommend.evaluate import time_split
from ddso.models.registry import ModelVersion

META_FILE = "recommender.json"
ARRAYS_FILE = "arrays.npz"


def _csr(frame: pd.DataFrame, rows: pd.Index, cols: pd.Index) -> sp.csr_matrix:
    """Rows x cols, 1 where a row bought the item (rows or items outside the index dropped)."""
    r = rows.get_indexer(frame["customer_id"].astype(str))
    c = cols.get_indexer(frame["product_id"].astype(str))
    keep = (r >= 0) & (c >= 0)
    m = sp.csr_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])),
                      shape=(len(rows), len(cols)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


class DeepRecommender(Recommender):
    """A recommender scored by a torch module trained with Ray Train (module docstring).

    Learned: ``module_`` (eval mode), ``module_config_``, ``training_`` (the loop's metrics:
    ``valid_ndcg10``, ``best_epochs``, per-epoch ``history``), ``context_`` (every known
    customer's context at ``as_of_``, the last training time) and ``popularity_`` (customers
    per item, the cold-start fallback).
    """

    module_class: ClassVar[type[torch.nn.Module]]

    training: Training

    @abstractmethod
    def _module_config(self, products: pd.DataFrame) -> dict[str, Any]: ...

    @abstractmethod
    def _examples(self, interactions: pd.DataFrame) -> Examples: ...

    @abstractmethod
    def _contexts(self, interactions: pd.DataFrame, customers: np.ndarray,
                  at: pd.Timestamp) -> dict[str, np.ndarray]: ...

    def _cold_context(self) -> dict[str, np.ndarray] | None:
        return None

    def _fit(self, interactions: pd.DataFrame, products: pd.DataFrame) -> None:
        cfg = self.training
        self.popularity_ = np.asarray((self.matrix_ > 0).sum(axis=0), dtype=float).ravel()
        self.module_config_ = self._module_config(products)
        cutoff = interactions["time"].quantile(1.0 - cfg.valid_share)
        inner = time_split(interactions, cutoff)
        if not inner.test:
            raise UserError(
                f"no customer bought new items in the last valid_share={cfg.valid_share} of "
                "the training interactions, so early stopping has nothing to validate on; "
                "raise valid_share or give more interactions")
        valid = self._validation(inner.train, inner.test, inner.cutoff)
        state, self.training_ = fit_with_ray_train(
            self.module_class, self.module_config_, self._examples(inner.train), valid,
            self._examples(interactions) if cfg.refit else None, cfg)
        self.as_of_ = pd.Timestamp(interactions["time"].max())
        # Strictly after the last purchase, so that the serving context includes it.
        self.context_ = self._contexts(interactions, np.arange(len(self.customers_)),
                                       self.as_of_ + pd.Timedelta(microseconds=1))
        self._serve(state)

    def _validation(self, before: pd.DataFrame, test: dict[str, set[str]],
                    cutoff: pd.Timestamp) -> Validation:
        customers = np.array(sorted(test), dtype=object)
        cap = self.training.max_valid_customers
        if len(customers) > cap:
            rng = np.random.default_rng(self.training.seed)
            customers = np.sort(rng.choice(customers, cap, replace=False))
        rows = pd.Index(customers)
        after = pd.DataFrame([(c, i) for c in customers for i in test[c]],
                             columns=["customer_id", "product_id"])
        return Validation(
            context=self._contexts(before, self.customer_pos_.get_indexer(rows), cutoff),
            owned=_csr(before, rows, self.item_pos_), relevant=_csr(after, rows, self.item_pos_))

    def _serve(self, state: dict[str, torch.Tensor]) -> None:
        """Build ``module_`` from ``state`` and precompute what every request shares."""
        self.module_ = self.module_class(**self.module_config_)
        self.module_.load_state_dict(state)
        self.module_.eval()
        with torch.inference_mode():
            self.table_ = self.module_.item_table()
        self.context_tensors_ = as_tensors(self.context_)
        self.all_items_ = torch.arange(len(self.items_))[None, :]
        cold = self._cold_context()
        self.cold_scores_ = self.popularity_ if cold is None else self._forward(
            as_tensors({k: v[None] for k, v in cold.items()}))

    def _forward(self, context: dict[str, torch.Tensor]) -> np.ndarray:
        with torch.inference_mode():
            logits = self.module_(context, self.all_items_, table=self.table_)
        return logits[0].numpy().astype(float)

    def scores(self, customer_id: str) -> np.ndarray:
        """Logits over ``items_``; the cold-start scores for a customer not seen in fit."""
        self._check_fitted()
        try:
            pos = self.customer_pos_.get_loc(customer_id)
        except KeyError:
            return self.cold_scores_.copy()
        return self._forward({k: v[pos : pos + 1] for k, v in self.context_tensors_.items()})

    def _params(self) -> dict[str, Any]:
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        params = {n: getattr(self, n) for n in names}
        params["training"] = dataclasses.asdict(self.training)
        return params

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write the fitted model to ``folder``; returns artifact name -> path (for
        :meth:`ModelRegistry.register`)."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.module_.state_dict(), folder / STATE_FILE)
        arrays = {k: v for k, v in self.module_config_.items() if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in self.module_config_.items() if k not in arrays}
        np.savez(folder / ARRAYS_FILE, popularity=self.popularity_, data=self.matrix_.data,
                 indices=self.matrix_.indices, indptr=self.matrix_.indptr,
                 **{f"module.{k}": v for k, v in arrays.items()},
                 **{f"context.{k}": v for k, v in self.context_.items()})
        meta = {"class": type(self).__name__, "params": self._params(), "module": scalars,
                "items": [str(i) for i in self.items_],
                "customers": [str(c) for c in self.customers_],
                "as_of": self.as_of_.isoformat(), "training": self.training_}
        (folder / META_FILE).write_text(json.dumps(meta))
        return {name: folder / name for name in (STATE_FILE, ARRAYS_FILE, META_FILE)}

    @classmethod
    def load(cls, source: str | Path | ModelVersion) -> Self:
        """A fitted model from a folder written by :meth:`save` or a registry version."""
        path: Callable[[str], Path] = (source.artifact if isinstance(source, ModelVersion)
                                       else lambda name: Path(source) / name)
        meta = json.loads(path(META_FILE).read_text())
        if meta["class"] != cls.__name__:
            raise UserError(f"{source} holds a {meta['class']}, not a {cls.__name__}; load it "
                            f"with {meta['class']}.load")
        params = meta["params"]
        model = cls(**{**params, "training": Training(**params["training"])})
        model.items_ = np.asarray(meta["items"], dtype=object)
        model.item_pos_ = pd.Index(model.items_)
        model.customers_ = np.asarray(meta["customers"], dtype=object)
        model.customer_pos_ = pd.Index(model.customers_)
        with np.load(path(ARRAYS_FILE), allow_pickle=False) as arrays:
            model.matrix_ = sp.csr_matrix(
                (arrays["data"], arrays["indices"], arrays["indptr"]),
                shape=(len(model.customers_), len(model.items_)))
            model.popularity_ = arrays["popularity"]
            model.context_ = {k.removeprefix("context."): arrays[k] for k in arrays.files
                              if k.startswith("context.")}
            model.module_config_ = {**meta["module"], **{
                k.removeprefix("module."): arrays[k] for k in arrays.files
                if k.startswith("module.")}}
        model.as_of_ = pd.Timestamp(meta["as_of"])
        model.training_ = meta["training"]
        model._serve(torch.load(path(STATE_FILE), weights_only=True))
        return model
