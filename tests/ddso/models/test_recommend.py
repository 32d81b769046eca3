"""Recommenders on small hand-made data where the right answer is obvious."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ddso.errors import NotFittedError, UserError
from ddso.models.recommend.cf import ItemCF, UserCF, similarity
from ddso.models.recommend.content import ContentTfidf
from ddso.models.recommend.evaluate import (
    average_precision,
    coverage,
    evaluate,
    hit_rate,
    ndcg,
    time_split,
)
from ddso.models.recommend.hybrid import Hybrid
from ddso.models.recommend.popularity import Popularity, Trending
from ddso.models.recommend.rules import AssociationRules

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def frame(rows: list[tuple], start: pd.Timestamp = T0) -> pd.DataFrame:
    """(customer, product, weight, day[, basket]) tuples -> an interactions frame."""
    df = pd.DataFrame(rows, columns=["customer_id", "product_id", "weight", "day", "basket_id"]
                      [: len(rows[0])])
    df["time"] = start + pd.to_timedelta(df.pop("day"), unit="D")
    return df


@pytest.fixture
def products() -> pd.DataFrame:
    return pd.DataFrame({
        "product_id": ["A", "B", "C", "D", "E", "F"],
        "name": ["red phone", "phone case", "blue lamp", "zeppelin poster", "desk lamp",
                 "zeppelin model kit"],
        "description": ["a phone", "protects a phone", "a lamp", "a rare print", "a lamp",
                        "build it"],
        "category_id": ["el", "el", "home", "art", "home", "art"],
        "eligibility_min_band": [None, None, None, "B", None, None],
    })


@pytest.fixture
def planted() -> pd.DataFrame:
    """Five customers buy A and B; u6 bought only A; u7 bought C."""
    rows = [(f"u{i}", p, 1.0, i) for i in range(1, 6) for p in "AB"]
    rows += [("u6", "A", 1.0, 7), ("u7", "C", 1.0, 8), ("u8", "C", 1.0, 9), ("u8", "E", 1.0, 9)]
    return frame(rows)


@pytest.mark.parametrize("model", [ItemCF("cosine"), ItemCF("jaccard"), UserCF("cosine"),
                                   UserCF("jaccard"), AssociationRules(min_count=1)])
def test_customers_who_buy_a_also_buy_b(model, planted, products):
    model.fit(planted, products)
    assert model.recommend("u6", 3, exclude={"A"})[0][0] == "B"


def test_jaccard_ignores_quantity_where_cosine_does_not():
    # rows are items, columns customers: w shares x's buyers with a big quantity, y adds one
    m = sp.csr_matrix(np.array([[1, 1, 0], [10, 1, 0], [1, 1, 1]], dtype=float))
    cos = similarity(m, "cosine").toarray()
    jac = similarity(m, "jaccard").toarray()
    assert cos[0, 2] > cos[0, 1]
    assert jac[0, 1] > jac[0, 2]
    assert jac[0, 1] == pytest.approx(1.0) and jac[0, 2] == pytest.approx(2 / 3)


def test_pearson_is_over_corated_and_mean_centred():
    a, b = np.array([1.0, 2, 3, 0]), np.array([2.0, 4, 6, 9])
    opposite = np.array([3.0, 2, 1, 0])
    s = similarity(sp.csr_matrix(np.vstack([a, b, opposite])), "pearson").toarray()
    ca, cb = a[:3] - 2.0, b[:3] - b.mean()
    expected = ca @ cb / np.sqrt((ca**2).sum() * (cb**2).sum())
    assert s[0, 1] == pytest.approx(expected)
    assert s[0, 2] == 0  # perfectly anti-correlated: dropped, yet cosine calls them similar
    assert similarity(sp.csr_matrix(np.vstack([a, b, opposite])), "cosine")[0, 2] > 0.5


def test_neighbours_are_capped():
    m = sp.random(40, 30, density=0.5, random_state=0, format="csr")
    s = similarity(m, "cosine", neighbours=5, block=7)
    assert np.diff(s.indptr).max() <= 5 and s.diagonal().sum() == 0


def test_rules_support_confidence_lift_by_hand(products):
    baskets = [("x", "A", 1, 0, "b1"), ("x", "B", 1, 0, "b1"), ("y", "A", 1, 1, "b2"),
               ("y", "B", 1, 1, "b2"), ("z", "A", 1, 2, "b3"), ("z", "C", 1, 2, "b3"),
               ("w", "B", 1, 3, "b4"), ("v", "D", 1, 4, "b5")]
    model = AssociationRules(min_support=0, min_confidence=0, min_count=1)
    rules = model.fit(frame(baskets), products).rules_.set_index(["antecedent", "consequent"])
    ab, ac = rules.loc[("A", "B")], rules.loc[("A", "C")]
    assert (ab["support"], ab["confidence"], ab["lift"]) == pytest.approx((0.4, 2 / 3, 10 / 9))
    assert (ac["support"], ac["confidence"], ac["lift"]) == pytest.approx((0.2, 1 / 3, 5 / 3))
    assert rules.loc[("C", "A")]["confidence"] == pytest.approx(1.0)
    assert model.recommend("z", 1, exclude={"A", "C"})[0][0] == "B"
    strict = AssociationRules(min_support=0.3, min_confidence=0, min_count=1)
    assert set(strict.fit(frame(baskets), products).rules_["consequent"]) == {"A", "B"}


def test_trending_favours_rising_over_flat_popular(products):
    flat = [(f"f{d}", "F", 10.0, d) for d in range(0, 56, 7)]
    rising = [(f"r{d}", "E", 3.0, d) for d in (50, 53)]
    data = frame(flat + rising)
    assert Popularity().fit(data, products).recommend("anyone", 1)[0][0] == "F"
    assert Trending(recent_days=14).fit(data, products).recommend("anyone", 1)[0][0] == "E"


def test_as_of_makes_popularity_point_in_time(products):
    data = frame([("a", "A", 1.0, 0), ("b", "B", 5.0, 30)])
    model = Popularity(as_of=T0 + pd.Timedelta(days=10)).fit(data, products)
    assert model.recommend("a", 2) == [("A", 1.0), ("B", 0.0)]  # B's 5 lie after as_of


def test_content_finds_the_shared_rare_word(products):
    model = ContentTfidf().fit(frame([("u", "D", 1.0, 0)]), products)
    assert model.recommend("u", 1, exclude={"D"})[0][0] == "F"
    assert model.recommend("nobody", 3) == []


def hybrid(**kwargs) -> Hybrid:
    return Hybrid({"item": (ItemCF(), 1.0), "pop": (Popularity(), 0.2)}, **kwargs)


def test_hybrid_excludes_owned_and_ineligible(planted, products):
    customers = pd.DataFrame({"band": ["D"]}, index=pd.Index(["u7"], name="customer_id"))
    model = hybrid(customers=customers, max_per_category=None).fit(planted, products)
    items = [p for p, _ in model.recommend("u7", 6)]
    assert "C" not in items and "D" not in items and items
    by_callable = hybrid(eligibility=lambda c, p: (p["category_id"] != "el").to_numpy())
    items = [p for p, _ in by_callable.fit(planted, products).recommend("u6", 6)]
    assert not {"A", "B"} & set(items)


def test_hybrid_caps_items_per_category(planted, products):
    model = hybrid(max_per_category=1).fit(planted, products)
    recs = model.recommend("u8", 6)
    cats = model.products_.loc[[p for p, _ in recs], "category_id"]
    assert len(recs) == cats.nunique() == 2  # el and art; home is owned (C, E)


def test_hybrid_cold_start_falls_back(planted, products):
    model = hybrid(fallback=Popularity()).fit(planted, products)
    assert model.recommend("stranger", 1)[0][0] in {"A", "B"}
    seg = hybrid(segments={"u7": "s", "u8": "s", "new": "s"}).fit(planted, products)
    assert seg.recommend("new", 1)[0][0] == "C"


def test_hybrid_maps_a_prefit_component_onto_its_items_by_product_id(planted, products):
    # Fitted on a catalogue in another order and without "F": its scores must land on the
    # hybrid's items by id, F counting as no opinion.
    other = products[products["product_id"] != "F"].iloc[::-1]
    pre = Popularity().fit(planted[planted["product_id"] != "F"], other)
    model = Hybrid({"item": (ItemCF(), 1.0), "pop": (pre, 0.2)}, prefit=["pop"])
    model.fit(planted, products)
    mapped = model.component_scores("pop", "u7")
    for j, item in enumerate(model.items_):
        expected = np.nan if item == "F" else pre.scores("u7")[pre.item_pos_.get_loc(item)]
        assert mapped[j] == pytest.approx(expected, nan_ok=True)
    refitted = hybrid().fit(planted[planted["product_id"] != "F"], products)
    assert [p for p, _ in model.recommend("u7", 3)] == [p for p, _ in refitted.recommend("u7", 3)]


def test_hybrid_prefit_names_must_be_fitted_components(planted, products):
    with pytest.raises(UserError, match="not components"):
        hybrid(prefit=["nope"]).fit(planted, products)
    with pytest.raises(NotFittedError):
        hybrid(prefit=["pop"]).fit(planted, products)


def test_metrics_by_hand():
    recs, relevant = ["x", "a", "y", "b"], {"a", "b", "c"}
    assert hit_rate(recs, relevant) == 1.0 and hit_rate(["x"], relevant) == 0.0
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert ndcg(recs, relevant) == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)
    assert average_precision(recs, relevant) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert ndcg(["a"], {"a"}) == 1.0 and average_precision(["a", "b"], {"b"}) == 0.5
    assert coverage([["a", "b"], ["b", "c"]], 6) == 0.5


def test_time_split_and_evaluate(planted, products):
    later = frame([("u6", "B", 1.0, 20), ("u7", "C", 1.0, 20), ("u9", "A", 1.0, 20)])
    split = time_split(pd.concat([planted, later]), T0 + pd.Timedelta(days=15))
    assert split.test == {"u6": {"B"}}  # u7 rebought, u9 has no history
    result = evaluate(ItemCF(), split, products)
    assert result["hr"] == result["ndcg"] == result["map"] == 1.0
    assert result["coverage"] == pytest.approx(1 / 6)


@pytest.mark.parametrize("model", [ItemCF(), UserCF(), AssociationRules(), Popularity(),
                                   Trending(), ContentTfidf(), hybrid()])
def test_not_fitted(model):
    with pytest.raises(NotFittedError, match="call fit"):
        model.recommend("u1", 3)
