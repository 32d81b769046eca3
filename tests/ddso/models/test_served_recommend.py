"""The recommender a replica serves: popularity, the hybrid, and the hybrid with the registry's
deep champions, on a small generated warehouse."""

from __future__ import annotations

import numpy as np
import pytest

from ddso.errors import UserError
from ddso.models.recommend.deep_training import Training
from ddso.models.recommend.served import ServedRecommender, warehouse_interactions
from ddso.models.recommend.wide_deep import WideDeep
from ddso.models.registry import ModelRegistry

pytestmark = pytest.mark.unit

FAST = Training(epochs=6, patience=2, negatives=2, batch_size=512, lr=0.01, num_workers=0,
                seed=1)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    from ddso.data.generator import GeneratorConfig, generate

    out = tmp_path_factory.mktemp("served-data")
    generate(GeneratorConfig(customers=300, days=90, seed=3), out, progress=False)
    return out / "warehouse"


@pytest.fixture(scope="module")
def wide_deep(warehouse, tmp_path_factory):
    """A small Wide & Deep fitted on the warehouse, saved to a folder."""
    import pandas as pd

    model = WideDeep(dim=8, hidden=(16, 8), training=FAST).fit(
        warehouse_interactions(warehouse), pd.read_parquet(warehouse / "products"))
    folder = tmp_path_factory.mktemp("wide-deep")
    return model, model.save(folder)


def _buyer(served: ServedRecommender) -> str:
    counts = served.interactions["customer_id"].value_counts()
    return str(counts.index[0])


def test_popularity_serves_best_sellers_without_owned_items(warehouse):
    served = ServedRecommender(warehouse, str(warehouse / "products"))
    customer = _buyer(served)
    label, items = served.recommend(customer, 5)
    assert label == "popularity" and len(items) == 5
    owned = set(served.interactions.loc[served.interactions["customer_id"] == customer,
                                        "product_id"])
    assert not owned & {p for p, _ in items}
    assert [s for _, s in items] == sorted((s for _, s in items), reverse=True)
    assert served.refresh() == []


def test_deep_models_blend_only_into_the_hybrid(warehouse, tmp_path):
    with pytest.raises(UserError, match="recommender='hybrid'"):
        ServedRecommender(warehouse, str(warehouse / "products"), "popularity", ["wide_deep"],
                          registry=ModelRegistry(str(tmp_path)))


def test_the_hybrid_takes_the_deep_champion_when_one_is_promoted(warehouse, wide_deep,
                                                                 tmp_path):
    model, artifacts = wide_deep
    registry = ModelRegistry(str(tmp_path / "registry"))
    served = ServedRecommender(warehouse, str(warehouse / "products"), "hybrid",
                               ["wide_deep"], 1.0, registry)
    customer = _buyer(served)
    # No champion yet: the non-deep hybrid answers, and says what it lacks.
    assert served.missing == ["wide_deep"]
    label, before = served.recommend(customer, 5)
    assert label == "hybrid" and before
    assert served.refresh() == []

    version = registry.register("wide_deep", artifacts, {})
    assert served.refresh() == [f"wide_deep:{version.version}"]
    assert served.missing == []
    label, after = served.recommend(customer, 5)
    assert label == f"hybrid+wide_deep:{version.version}" and len(after) == 5
    hybrid = served.current.model
    # The blend scores the loaded champion: its logits, mapped onto the hybrid's items.
    deep = hybrid.component_scores("wide_deep", customer)
    expected = model.scores(customer)[model.item_pos_.get_indexer(hybrid.items_)]
    np.testing.assert_allclose(deep, expected, rtol=1e-6)
    owned = set(served.interactions.loc[served.interactions["customer_id"] == customer,
                                        "product_id"])
    assert not owned & {p for p, _ in after}
    assert served.refresh() == []  # unchanged champion: nothing reloaded
    cold_label, cold = served.recommend("NEVER-SEEN", 5)
    assert cold_label == label and len(cold) == 5
