"""The recommender a decision replica serves, chosen by configuration.

``popularity`` (the default): the warehouse's best sellers, the customer's own purchases left
out. ``hybrid``: the blend of :func:`~ddso.models.recommend.hybrid.default_components` under the
hybrid's business rules (owned items out, at most three per category), plus, for each name in
``deep`` (``wide_deep``, ``ncf``), the registry champion of that name at ``deep_weight``.

The non-deep parts are fitted once, when the replica starts, on the warehouse's sales. The
deep models are trained and promoted by ``pipelines.train_recommenders``; here they are only
loaded. :meth:`ServedRecommender.refresh` (the replica's model-refresh loop) loads a newly
promoted deep champion and swaps the blend in one assignment, so a request runs on the blend
it started with. A configured deep model without a champion is left out of the blend, with
a warning and in :attr:`ServedRecommender.missing`, until one is promoted: recommendations
degrade to the non-deep hybrid rather than fail.

Torch runs on one intra-op thread in a process serving a deep model (see
:func:`ddso.runtime.torch_threads`: a thread per core made one request's p99 5x worse).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from ddso.errors import UserError
from ddso.models.recommend.base import Recommender
from ddso.models.recommend.deep import DeepRecommender
from ddso.models.recommend.evaluate import interactions_from_sales
from ddso.models.recommend.hybrid import Hybrid, default_components
from ddso.models.recommend.ncf import NeuralCF
from ddso.models.recommend.popularity import Popularity
from ddso.models.recommend.wide_deep import WideDeep
from ddso.models.registry import ModelRegistry

log = logging.getLogger(__name__)

RecommenderKind = Literal["popularity", "hybrid"]
DeepName = Literal["wide_deep", "ncf"]
DEEP_MODELS: dict[str, type[DeepRecommender]] = {"wide_deep": WideDeep, "ncf": NeuralCF}
"""Registry name -> class of the deep recommenders a hybrid can include."""


def warehouse_interactions(warehouse: Path) -> pd.DataFrame:
    """One row per purchase line of the warehouse (see ``interactions_from_sales``)."""
    sales = pd.read_parquet(warehouse / "sales", columns=["sale_id", "customer_id", "sold_at"])
    details = pd.read_parquet(
        warehouse / "sales_details", columns=["sale_id", "product_id", "quantity"]
    )
    return interactions_from_sales(sales, details)


@dataclass(frozen=True)
class Served:
    """One fitted recommender and what answers name it by: ``popularity``, ``hybrid`` or e.g.
    ``hybrid+wide_deep:v3`` (the deep champions in the blend)."""

    model: Recommender
    label: str
    deep_versions: tuple[str, ...]


class ServedRecommender:
    """The configured recommender of one replica (module docstring)."""

    def __init__(self, warehouse: Path, products_path: str, kind: RecommenderKind = "popularity",
                 deep: Sequence[DeepName] = (), deep_weight: float = 1.0,
                 registry: ModelRegistry | None = None):
        if deep and kind != "hybrid":
            raise UserError(f"deep recommenders {list(deep)} blend only into the hybrid; set "
                            "recommender='hybrid' (popularity alone has nothing to blend with)")
        if deep and registry is None:
            raise UserError("deep recommenders are loaded from a model registry; pass registry")
        self.deep = tuple(deep)
        self.deep_weight = deep_weight
        self.registry = registry
        self.missing: list[str] = []
        self._loaded: dict[str, DeepRecommender] = {}
        self.interactions = warehouse_interactions(warehouse)
        self.products = pd.read_parquet(products_path)
        if kind == "popularity":
            model = Popularity().fit(self.interactions, self.products[["product_id"]])
            self.current = Served(model, "popularity", ())
            return
        if self.deep:
            import torch

            torch.set_num_threads(1)
        # Fitted once: a refresh re-blends them with new deep champions without refitting.
        self.parts = default_components()
        for model, _ in self.parts.values():
            model.fit(self.interactions, self.products)
        self.current = self._blend(self._champions())

    def recommend(self, customer_id: str, k: int) -> tuple[str, list[tuple[str, float]]]:
        """The label of the model that answered and its top ``k`` ``(product_id, score)``,
        the customer's own purchases left out."""
        served = self.current  # once: a refresh may swap it while this request runs
        model = served.model
        return served.label, model.recommend(customer_id, k, exclude=model.owned(customer_id))

    def refresh(self) -> list[str]:
        """Re-blend if a deep champion changed since loaded; the versions swapped in."""
        if not self.deep:
            return []
        champions = self._champions()
        if tuple(champions) == self.current.deep_versions:
            return []
        self.current = self._blend(champions)
        return list(champions) or ["hybrid without deep models"]

    def _champions(self) -> dict[str, DeepRecommender]:
        """``name:version`` -> loaded model of each configured deep champion in the registry
        (a model already loaded is reused); the names without a champion in :attr:`missing`."""
        loaded, missing = {}, []
        for name in self.deep:
            try:
                version = self.registry.champion(name)
            except UserError:
                missing.append(name)
                continue
            key = f"{name}:{version.version}"
            loaded[key] = self._loaded.get(key) or DEEP_MODELS[name].load(version)
        if missing and missing != self.missing:
            log.warning("no champion yet for deep recommender(s) %s: recommendations blend "
                        "without them until one is promoted", ", ".join(missing))
        self.missing, self._loaded = missing, loaded
        return loaded

    def _blend(self, champions: dict[str, DeepRecommender]) -> Served:
        components = dict(self.parts)
        for key, model in champions.items():
            components[key.split(":")[0]] = (model, self.deep_weight)
        hybrid = Hybrid(components, prefit=components).fit(self.interactions, self.products)
        label = "+".join(["hybrid", *champions])
        return Served(hybrid, label, tuple(champions))
