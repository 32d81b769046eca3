"""Graph features on hand-computed graphs, and batch == streaming on generated events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from ddso.data.generator import GeneratorConfig, generate
from ddso.features import graph
from ddso.schemas.events import Purchase, PurchaseLine, View
from ddso.stores.offline import OfflineStore, events_table

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
D = graph.DAMPING


def purchase(eid: str, customer: str, products: str, hours: int = 0) -> Purchase:
    return Purchase(
        type="purchase",
        event_id=eid,
        customer_id=customer,
        event_time=T0 + timedelta(hours=hours),
        source="web",
        sale_id=f"sale-{eid}",
        channel="web",
        lines=[PurchaseLine(product_id=p, quantity=2, unit_price=10.0) for p in products],
    )


def view(eid: str, customer: str, session: str, product: str, hours: int = 0) -> View:
    return View(
        type="view",
        event_id=eid,
        customer_id=customer,
        event_time=T0 + timedelta(hours=hours),
        source="web",
        session_id=session,
        product_id=product,
        price=10.0,
    )


# Co-purchase: sales {A,B}, {A,C} (c1), {A,D} (c2), {A,B} (c3): W[A,B] = 2, W[A,C] = W[A,D] = 1.
# Co-view: c2's session s1 views A, B (and A again), c3's session s2 views only C.
EVENTS = [
    purchase("e1", "c1", "AB"),
    purchase("e2", "c1", "AC", hours=1),
    purchase("e3", "c2", "AD"),
    purchase("e4", "c3", "AB", hours=2),
    view("v1", "c2", "s1", "A"),
    view("v2", "c2", "s1", "B", hours=1),
    view("v3", "c2", "s1", "A", hours=2),
    view("v4", "c3", "s2", "C", hours=3),
]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """The hand-made events as the offline store holds them (view ids only in the payload)."""
    store = OfflineStore(tmp_path_factory.mktemp("offline"))
    store.write_batch(events_table(EVENTS, range(len(EVENTS)), "s", T0), "s", 0, len(EVENTS) - 1)
    return store.read(["event_id", "customer_id", "type", "event_time", "lines", "payload"])


@pytest.fixture(scope="module")
def hand(offline):
    return graph.graph_features(offline)


def dense_pagerank(w: np.ndarray, d: float = D) -> np.ndarray:
    """Reference: solve r = d (r P) + (1 - d) / n, dangling rows of P uniform."""
    n = len(w)
    out = w.sum(axis=1, keepdims=True)
    p = np.where(out > 0, w / np.where(out > 0, out, 1.0), 1.0 / n)
    return np.linalg.solve(np.eye(n) - d * p.T, np.full(n, (1 - d) / n))


def test_interactions_read_lines_and_view_payloads(offline):
    rows = graph.interactions(offline)
    got = set(map(tuple, rows[list(graph.INTERACTION_COLUMNS)].to_numpy()))
    assert ("c2", "view", "s1", "A") in got and ("c3", "view", "s2", "C") in got
    assert ("c1", "purchase", "e2", "C") in got
    # 8 purchase lines and 3 distinct viewed basket-products (A viewed twice in s1).
    assert len(rows) == len(got) == 11


def test_item_graph_counts_baskets_per_pair(offline):
    g = graph.build_graph(graph.interactions(offline), "copurchase")
    assert list(g.items) == ["A", "B", "C", "D"] and list(g.customers) == ["c1", "c2", "c3"]
    w = g.cooccurrence.toarray()
    np.testing.assert_array_equal(w, [[0, 2, 1, 1], [2, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(g.bipartite.toarray(), [[1, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]])
    # Y: the customer's own baskets' share of each row sum of W.
    np.testing.assert_array_equal(
        g.own_degree.toarray(), [[2, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]]
    )


def test_pagerank_of_a_star_has_its_closed_form():
    star = sp.csr_array(np.array([[0, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], float))
    r = graph.pagerank(star)
    # Centre: r_c = (1-d)/n + d * 3 r_l, leaves: r_l = (1-d)/n + d r_c / 3.
    centre = (1 + 3 * D) / (4 * (1 + D))
    np.testing.assert_allclose(r, [centre, *[(1 - centre) / 3] * 3], atol=1e-11)


def test_pagerank_matches_a_dense_solve_with_weights_and_a_dangling_node():
    w = np.array([[0, 2, 1, 0], [2, 0, 3, 0], [1, 3, 0, 0], [0, 0, 0, 0]], float)
    np.testing.assert_allclose(graph.pagerank(sp.csr_array(w)), dense_pagerank(w), atol=1e-11)


def test_item_features_degree_and_scaled_pagerank(hand, offline):
    items = hand[1].set_index("product_id")
    np.testing.assert_array_equal(items["copurchase_degree"], [3, 1, 1, 1])
    w = graph.build_graph(graph.interactions(offline), "copurchase").cooccurrence.toarray()
    np.testing.assert_allclose(items["copurchase_pagerank"], 4 * dense_pagerank(w), atol=1e-10)
    # Co-view: one edge A-B; C is alone (dangling), D was never viewed (not in the graph).
    np.testing.assert_array_equal(items["coview_degree"], [1, 1, 0, 0])
    coview = 3 * dense_pagerank(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], float))
    np.testing.assert_allclose(items["coview_pagerank"], [*coview, 0.0], atol=1e-10)


def test_customer_features_by_hand(hand):
    c = hand[0].set_index("customer_id")
    assert list(c.index) == ["c1", "c2", "c3"]
    np.testing.assert_allclose(c["copurchase_degree_mean"], [5 / 3, 2.0, 2.0])
    # c1 {A,B,C}: others (c3) bought A with B, nobody else bought C with A or B.
    # c2 {A,D}: only c2 bought A with D.  c3 {A,B}: c1 bought A with B.
    np.testing.assert_allclose(c["copurchase_overlap"], [2 / 3, 0.0, 1.0])
    # Walks by hand on P: A -> B 1/2, C 1/4, D 1/4; B, C, D -> A.
    np.testing.assert_allclose(c["copurchase_walk_3"], [8 / 9, 5 / 8, 3 / 4])
    # c1 never viewed; c2's session links A-B (only its own); c3 viewed C alone.
    np.testing.assert_allclose(c["coview_degree_mean"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(c["coview_overlap"], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(c["coview_walk_3"], [0.0, 1.0, 0.0])


def test_until_drops_later_events(offline):
    customers, _ = graph.graph_features(offline, until=T0 + timedelta(minutes=30))
    c = customers.set_index("customer_id")
    # Left: sales e1 {A,B} (c1) and e3 {A,D} (c2), and c2's first view.
    np.testing.assert_allclose(c["copurchase_degree_mean"], [1.5, 1.5])
    np.testing.assert_allclose(c["coview_degree_mean"], [0.0, 0.0])


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "d"
    generate(GeneratorConfig(customers=400, days=60, seed=1), out, progress=False)
    return pq.read_table(out / "events")


@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_equals_batch_in_any_order_with_redelivery(generated, seed):
    batch = graph.graph_features(generated)
    rng = np.random.default_rng(seed)
    shuffled = generated.take(rng.permutation(generated.num_rows))
    cuts = np.sort(rng.choice(np.arange(1, shuffled.num_rows), 12, replace=False))
    bounds = [0, *cuts, shuffled.num_rows]
    pieces = [shuffled.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    state = graph.GraphState()
    for piece in [*pieces, pieces[3], pieces[0]]:
        state.update(piece)
    stream = state.features()
    assert len(batch[0]) > 150 and batch[0]["coview_degree_mean"].gt(0).mean() > 0.5
    assert batch[1]["copurchase_degree"].gt(0).any()
    for b, s in zip(batch, stream, strict=True):
        pd.testing.assert_frame_equal(b, s, check_exact=True)


def test_streaming_graph_is_the_batch_graph(generated):
    state = graph.GraphState()
    state.update(generated)
    rows = graph.interactions(generated)
    for name in graph.KINDS:
        b, s = graph.build_graph(rows, name), state.graph(name)
        np.testing.assert_array_equal(b.items, s.items)
        np.testing.assert_array_equal(b.customers, s.customers)
        for m in ("cooccurrence", "bipartite", "own_degree"):
            assert (getattr(b, m) != getattr(s, m)).nnz == 0, (name, m)


def test_offline_store_and_generated_columns_give_the_same_rows(offline):
    flat = offline.to_pandas()
    payload = flat.pop("payload")
    ids = payload.map(json.loads)
    flat["session_id"] = [r.get("session_id") for r in ids]
    flat["product_id"] = [r.get("product_id") for r in ids]
    a = graph.interactions(offline).sort_values(list(graph.INTERACTION_COLUMNS))
    b = graph.interactions(flat).sort_values(list(graph.INTERACTION_COLUMNS))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_no_events_give_empty_frames_with_the_columns():
    customers, items = graph.graph_features(
        pd.DataFrame(columns=["customer_id", "type", "event_time", "event_id", "lines"])
    )
    assert list(customers.columns) == ["customer_id", *graph.CUSTOMER_COLUMNS]
    assert list(items.columns) == ["product_id", *graph.ITEM_COLUMNS]
    assert customers.empty and items.empty


def test_some_customers_get_their_rows_of_the_whole_table(generated):
    state = graph.GraphState()
    touched = state.update(generated)
    whole = state.customer_features()
    assert touched == state.customers() == set(whole["customer_id"])
    pd.testing.assert_frame_equal(whole, graph.graph_features(generated)[0], check_exact=True)
    # Customers with only views, only purchases, and both; an unknown id gets no row.
    rows = graph.interactions(generated)
    kinds = rows.groupby("customer_id")["kind"].agg(frozenset)
    some = [kinds[kinds == frozenset(k)].index[0] for k in (["view"], ["purchase", "view"])]
    some += list(whole["customer_id"].sample(20, random_state=3))
    part = state.customer_features([*some, "nobody"])
    expected = whole[whole["customer_id"].isin(some)].reset_index(drop=True)
    assert list(part["customer_id"]) == list(expected["customer_id"])
    # The walk runs dense BLAS blocks of another shape: equal up to rounding.
    np.testing.assert_allclose(
        part[list(graph.CUSTOMER_COLUMNS)], expected[list(graph.CUSTOMER_COLUMNS)], rtol=1e-12
    )
    assert state.customer_features([]).empty


def test_update_reports_the_customers_whose_baskets_it_folded(offline):
    state = graph.GraphState()
    assert state.update(offline.slice(0, 2)) == {"c1"}
    assert state.update(offline.filter(pc.equal(offline["type"], "view"))) == {"c2", "c3"}
    assert state.customers() == {"c1", "c2", "c3"}
