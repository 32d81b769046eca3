"""Neural recommenders (NCF, Wide & Deep) and their training, on small made-up data.

Models train in Ray Train's local mode (``num_workers=0``: the same loop, in this process);
``tests/pipelines/test_train_recommenders.py`` trains them on Ray Train workers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from ddso.errors import NotFittedError, UserError
from ddso.models.recommend.deep_training import Training, ndcg_at_k, sample_negatives
from ddso.models.recommend.evaluate import evaluate, ndcg, time_split
from ddso.models.recommend.ncf import NeuralCF
from ddso.models.recommend.popularity import Popularity
from ddso.models.recommend.wide_deep import WideDeep, purchase_history

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2025-01-01", tz="UTC")
FAST = Training(epochs=40, patience=4, negatives=4, batch_size=256, lr=0.01, valid_share=0.25,
                num_workers=0, seed=3)


def taste_world(customers: int = 240, categories: int = 4, per_category: int = 6,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each customer buys only in one category (their taste), four items over 4 months, the
    items of a category by a steep popularity; half the customers like category 0, so the
    global best sellers are wrong for the other half."""
    rng = np.random.default_rng(seed)
    products = pd.DataFrame({
        "product_id": [f"p{c}{i}" for c in range(categories) for i in range(per_category)],
        "category_id": [f"c{c}" for c in range(categories) for _ in range(per_category)],
        "subcategory_id": [f"s{c}{i % 2}" for c in range(categories) for i in range(per_category)],
        "brand_id": [f"b{i % 3}" for _ in range(categories) for i in range(per_category)],
    })
    weight = 1.0 / np.arange(1, per_category + 1)
    rows = []
    for n in range(customers):
        taste = 0 if n % 2 == 0 else int(rng.integers(1, categories))
        picks = rng.choice(per_category, 4, replace=False, p=weight / weight.sum())
        days = np.sort(rng.choice(120, 4, replace=False))
        rows += [(f"u{n:03d}", f"p{taste}{i}", 1.0, T0 + pd.Timedelta(days=int(d)))
                 for i, d in zip(picks, days, strict=True)]
    return pd.DataFrame(rows, columns=["customer_id", "product_id", "weight", "time"]), products


@pytest.fixture(scope="module")
def world():
    interactions, products = taste_world()
    return time_split(interactions, T0 + pd.Timedelta(days=90)), products


@pytest.fixture(scope="module")
def fitted(world):
    split, products = world
    return {"ncf": NeuralCF(dim=8, hidden=(16, 8), training=FAST).fit(split.train, products),
            "wide_deep": WideDeep(dim=8, hidden=(16, 8), training=FAST).fit(split.train,
                                                                            products)}


def test_negative_sampler_never_draws_a_bought_item_and_reaches_all_others():
    rng = np.random.default_rng(0)
    dense = rng.random((30, 12)) < 0.6
    dense[0] = np.arange(12) != 11  # one item left to draw for customer 0
    bought = sp.csr_matrix(dense, dtype=float)
    customer = np.repeat(np.arange(30), 50)
    negatives = sample_negatives(customer, bought, 5, rng)
    assert negatives.shape == (1500, 5)
    assert not dense[customer[:, None], negatives].any()
    for c in range(30):
        assert set(negatives[customer == c].ravel()) == set(np.flatnonzero(~dense[c]))
    dense[1] = True
    with pytest.raises(UserError, match="bought every one"):
        sample_negatives(np.array([1]), sp.csr_matrix(dense, dtype=float), 1, rng)


def test_ndcg_at_k_matches_the_evaluation_metric():
    torch.manual_seed(1)
    scores = torch.randn(20, 30)
    owned = torch.rand(20, 30) < 0.2
    relevant = (torch.rand(20, 30) < 0.15) & ~owned
    relevant[:, 0] = ~owned[:, 0]
    got = ndcg_at_k(scores, owned, relevant, k=10)
    for r in range(20):
        order = [i for i in np.argsort(-scores[r].numpy(), kind="stable") if not owned[r, i]]
        rel = set(np.flatnonzero(relevant[r].numpy()))
        want = ndcg(order, rel, 10) if rel else 0.0
        assert got[r].item() == pytest.approx(want, abs=1e-6), r


def test_purchase_history_sees_only_earlier_baskets():
    # customer 0: basket at t=10 (items 1 and 2, categories 0 and 1), basket at t=20 (item 3)
    customer = np.array([0, 0, 0, 1])
    item, category = np.array([1, 2, 3, 0]), np.array([0, 1, 1, 0])
    day = 86_400 * 10**9
    time = np.array([10, 10, 20, 5]) * day
    h = purchase_history(customer, item, category, time, 2, np.array([0, 0, 0, 1, 2]),
                         np.array([10, 20, 25, 5, 99]) * day)
    assert h["last"].tolist() == [0, 3, 4, 0, 0]  # item + 1; 0 = nothing before
    assert h["categories"].tolist() == [[0, 0], [1, 1], [1, 2], [0, 0], [0, 0]]
    assert np.expm1(h["context"][:, 0]).round().tolist() == [0, 1, 2, 0, 0]  # baskets
    assert np.expm1(h["context"][:, 1]).round(4).tolist() == [0, 10, 5, 0, 0]  # days since


def test_neural_models_learn_tastes_that_popularity_misses(world, fitted):
    split, products = world
    popularity = evaluate(Popularity(), split, products)["ndcg"]
    owned = split.train.groupby("customer_id")["product_id"].agg(set)
    for name, model in fitted.items():
        ranked = np.mean([ndcg([i for i, _ in model.recommend(c, 10, owned[c])], relevant, 10)
                          for c, relevant in split.test.items()])
        assert ranked > popularity + 0.15, (name, ranked, popularity)


def test_early_stopping_stops_after_patience_epochs_without_gain(fitted):
    for model in fitted.values():
        t = model.training_
        history = t["history"]
        assert t["epochs_run"] == len(history) < FAST.epochs
        assert t["best_epochs"] == int(np.argmax(history)) + 1
        assert t["epochs_run"] == t["best_epochs"] + FAST.patience
        assert max(history[t["best_epochs"]:]) <= max(history)


def test_save_load_round_trip_scores_identically(fitted, tmp_path):
    for name, model in fitted.items():
        files = model.save(tmp_path / name)
        assert sorted(files) == ["arrays.npz", "model.pt", "recommender.json"]
        loaded = type(model).load(tmp_path / name)
        for customer in ("u000", "u001", "u017", "never-seen"):
            np.testing.assert_array_equal(loaded.scores(customer), model.scores(customer))
        assert loaded.recommend("u001", 5) == model.recommend("u001", 5)
        assert loaded.owned("u001") == model.owned("u001")
        with pytest.raises(UserError, match="load it with"):
            (NeuralCF if name == "wide_deep" else WideDeep).load(tmp_path / name)


def test_same_seed_same_model(world, fitted):
    split, products = world
    again = WideDeep(dim=8, hidden=(16, 8), training=FAST).fit(split.train, products)
    np.testing.assert_array_equal(again.scores("u005"), fitted["wide_deep"].scores("u005"))


def test_cold_customers_get_a_ranking_and_unfitted_models_say_so(fitted):
    ncf, wd = fitted["ncf"], fitted["wide_deep"]
    np.testing.assert_array_equal(ncf.scores("never-seen"), ncf.popularity_)
    cold = wd.scores("never-seen")
    assert np.isfinite(cold).all() and cold.shape == (len(wd.items_),)
    with pytest.raises(NotFittedError, match="call fit"):
        WideDeep().scores("u000")
