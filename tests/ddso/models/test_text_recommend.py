"""Dense content models: sentence embeddings of product text, item2vec and their shared scoring."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ddso.errors import NotFittedError, UserError
from ddso.models.recommend.content import ContentTfidf, ItemVectors
from ddso.models.recommend.hybrid import Hybrid
from ddso.models.recommend.item2vec import Item2Vec, Item2VecRecommender, skipgram_pairs
from ddso.models.recommend.popularity import Popularity
from ddso.models.recommend.text import ContentEmbedding

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2025-01-01", tz="UTC")

# Run in a fresh interpreter so that no earlier import of huggingface_hub can have read the
# environment first: sockets refuse to connect and every Hugging Face cache is an empty folder.
OFFLINE_SCRIPT = """
import json, os, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network disabled by the test")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
from ddso.models.recommend.text import encode
e = encode(["smartphone", "mobile handset", "desk lamp", ""])
print(json.dumps({"shape": list(e.shape), "dtype": str(e.dtype),
                  "norms": [float(x) for x in (e ** 2).sum(1)],
                  "phone_handset": float(e[0] @ e[1]), "phone_lamp": float(e[0] @ e[2]),
                  "offline": [os.environ.get("HF_HUB_OFFLINE"),
                              os.environ.get("TRANSFORMERS_OFFLINE")],
                  "cache": os.listdir(sys.argv[1])}))
"""


def frame(rows: list[tuple]) -> pd.DataFrame:
    """(customer, product, day) tuples -> an interactions frame of weight 1."""
    df = pd.DataFrame(rows, columns=["customer_id", "product_id", "day"])
    df["time"] = T0 + pd.to_timedelta(df.pop("day"), unit="D")
    df["weight"] = 1.0
    return df


@pytest.fixture
def products() -> pd.DataFrame:
    return pd.DataFrame({
        "product_id": ["A", "B", "C", "D", "E"],
        "name": ["smartphone", "mobile handset", "desk lamp", "floor light", "zeppelin poster"],
        "category_id": ["el", "el", "home", "home", "art"],
    })


def test_model_loads_and_encodes_with_no_network_and_an_empty_cache(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path), HF_HUB_CACHE=str(tmp_path / "hub"),
               SENTENCE_TRANSFORMERS_HOME=str(tmp_path / "st"))
    done = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["shape"] == [4, 384] and out["dtype"] == "float32"
    assert out["norms"][:3] == pytest.approx([1, 1, 1], abs=1e-5) and out["norms"][3] == 0
    assert out["phone_handset"] > out["phone_lamp"] + 0.2  # meaning, with no shared word
    assert out["offline"] == ["1", "1"] and out["cache"] == []


def test_content_embedding_finds_synonyms_tfidf_cannot(products):
    data = frame([("u", "A", 0), ("v", "C", 0)])
    model = ContentEmbedding().fit(data, products)
    assert model.recommend("u", 1, exclude={"A"})[0][0] == "B"
    assert model.recommend("v", 1, exclude={"C"})[0][0] == "D"
    assert ContentTfidf().fit(data, products).recommend("u", 1, exclude={"A"}) == []
    assert model.vectors_.shape == (5, 384) and model.vectors_.dtype == np.float32
    assert [item for item, _ in model.similar_items("A", 2)] == ["B", "C"]


def test_content_embedding_edges(products):
    data = frame([("u", "A", 0), ("u", "ghost", 1)])  # ghost: bought, not in the catalogue
    model = ContentEmbedding().fit(data, products)
    scores = model.scores("u")
    assert scores.shape == (6,) and list(model.items_) == ["A", "B", "C", "D", "E", "ghost"]
    assert np.isnan(scores[-1]) and not np.isnan(scores[:-1]).any()
    assert np.isnan(model.scores("stranger")).all() and model.recommend("stranger", 3) == []
    assert model.similar_items("ghost", 3) == []
    with pytest.raises(UserError, match="not in the fitted catalogue"):
        model.similar_items("nope", 3)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.scores("u"), scores)


class OneHot(ItemVectors):
    """Item vectors given by hand: one axis per category."""

    def _item_vectors(self, interactions, products):
        cats = products.set_index("product_id")["category_id"].reindex(self.item_pos_)
        return pd.get_dummies(cats).to_numpy(dtype=float)


def test_profiles_weigh_recent_purchases_more(products):
    # u bought a phone twice long ago and a lamp lately
    data = frame([("u", "A", 0), ("u", "A", 1), ("u", "C", 360)])
    recent = OneHot(half_life_days=30).fit(data, products)
    flat = OneHot(half_life_days=None).fit(data, products)
    assert recent.recommend("u", 1, exclude={"A", "C"})[0][0] == "D"
    assert flat.recommend("u", 1, exclude={"A", "C"})[0][0] == "B"
    # cosine by hand: the flat profile is (el 2, home 1) / sqrt(5); E (art) is orthogonal
    r5 = np.sqrt(5)
    assert flat.scores("u") == pytest.approx([2 / r5, 2 / r5, 1 / r5, 1 / r5, 0])


def test_skipgram_pairs_stay_within_a_customer_and_the_window():
    tokens, owner = np.array([0, 1, 2, 2, 3, 4]), np.array([0, 0, 0, 0, 1, 1])
    pairs = set(zip(*skipgram_pairs(tokens, owner, 1), strict=True))
    assert pairs == {(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)}  # no (2, 2), no (2, 3)
    wide = set(zip(*skipgram_pairs(tokens, owner, 3), strict=True))
    assert wide - pairs == {(0, 2), (2, 0)}


@pytest.fixture
def two_worlds() -> pd.DataFrame:
    """Odd customers buy only A and B, even ones only C and D, six purchases each; "lone"
    buys E once, so E is never anyone's neighbour."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        world = "AB" if i % 2 else "CD"
        for day in range(6):
            rows.append((f"u{i}", world[rng.integers(2)], day))
    return frame(rows + [("lone", "E", 0)])


def test_item2vec_puts_items_bought_in_sequence_near(two_worlds, products):
    model = Item2Vec(epochs=10, seed=1).fit(two_worlds, products["product_id"])
    within = min(model.similarity("A", "B"), model.similarity("C", "D"))
    across = max(model.similarity(a, b) for a in "AB" for b in "CD")
    assert within > across + 0.5
    assert model.losses_[-1] < model.losses_[0]
    assert not model.vectors_[list(model.items_).index("E")].any()  # no neighbour, no vector
    again = Item2Vec(epochs=10, seed=1).fit(two_worlds, products["product_id"])
    np.testing.assert_array_equal(again.vectors_, model.vectors_)


def test_item2vec_recommender_and_hybrid(two_worlds, products):
    model = Item2VecRecommender(epochs=10).fit(two_worlds, products)
    assert model.recommend("u1", 1, exclude={"A"})[0][0] == "B"
    assert np.isnan(model.scores("lone")).all()
    assert [item for item, _ in model.similar_items("C", 1)] == ["D"]
    blend = Hybrid({"text": (ContentEmbedding(), 1.0), "item2vec": (Item2VecRecommender(), 1.0),
                    "tfidf": (ContentTfidf(), 0.5), "pop": (Popularity(), 0.2)},
                   max_per_category=None).fit(two_worlds, products)
    assert {item for item, _ in blend.recommend("u1", 5)} == {"C", "D", "E"}  # A, B owned


@pytest.mark.parametrize("model", [ContentEmbedding(), Item2VecRecommender()])
def test_not_fitted(model):
    with pytest.raises(NotFittedError, match="call fit"):
        model.similar_items("A")
    with pytest.raises(NotFittedError, match="call fit"):
        model.scores("u1")


def test_item2vec_not_fitted():
    with pytest.raises(NotFittedError, match="call fit"):
        Item2Vec().similarity("A", "B")
