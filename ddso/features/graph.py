"""Graph features: co-purchase and co-view item graphs and the customer-item bipartite graph.

Two kinds of *basket* link products: a purchase event (its lines) and a web/app session (the
products viewed in it). For each kind ``k`` (``copurchase`` from purchases, ``coview`` from
views), over every event at or before ``until``:

- the item graph ``W``: ``W[i, j]`` = number of baskets holding both products ``i != j``
  (symmetric, zero diagonal; a product counts once per basket whatever its quantity);
- the bipartite graph ``B``: ``B[c, i] = 1`` if customer ``c`` has product ``i`` in a basket;
- ``Y[c, i]``: the part of ``W[i, :].sum()`` that comes from ``c``'s own baskets (the sum of
  ``basket size - 1`` over ``c``'s baskets holding ``i``), so that a customer's own baskets
  can be left out of what "other customers" did.

Per product (:data:`ITEM_COLUMNS`): ``{k}_degree`` = distinct neighbours in ``W``;
``{k}_pagerank`` = PageRank of ``W`` (:func:`pagerank`) times the number of products in that
graph, so that 1.0 is an average product whatever the catalogue size.

Per customer with items ``S`` (their products of that kind; :data:`CUSTOMER_COLUMNS`, all 0.0
for a customer without any):

- ``{k}_degree_mean``, ``{k}_pagerank_mean``: the two product features averaged over ``S``;
- ``{k}_overlap``: the share of ``S`` that *other* customers also had in one basket with
  another product of ``S``: ``|{i in S : sum_{j in S} (W - W_c)[i, j] > 0}| / |S|``, where
  ``W_c`` is the item graph of ``c``'s own baskets (``sum_j W_c[i, j] = Y[c, i]``). 1.0: the
  customer's products form combinations others share; 0.0: nobody else combines them;
- ``{k}_walk_3``: random-walk co-occurrence. A walk starts on a product of ``S`` chosen
  uniformly and steps to a neighbour with probability proportional to ``W`` (a product
  without neighbours ends the walk); the feature is the mean over 1, 2 and 3 steps of the
  probability of standing on a product of ``S``. Computed exactly by sparse matrix powers.

Batch: :func:`graph_features` (events -> :func:`interactions` -> :func:`build_graph` ->
:func:`customer_features`). Streaming: :class:`GraphState` keeps the baskets and the counts
``W``, ``B``, ``Y`` and updates them per micro-batch; :meth:`GraphState.graph` hands the same
:class:`ItemGraph` to the same :func:`customer_features`. Baskets are sets, so the state is
the same for any order of batches and a redelivered batch changes nothing. A customer's row
reads only its own rows of ``B`` and ``Y`` and the global ``W``, so :meth:`ItemGraph.restrict`
and :func:`customer_table` compute the rows of a few customers (the ones the stream job
refreshes) without the cost of all the others.

Who runs them: the Spark backfill (:mod:`pipelines.backfill`) writes the customer features
into the feature snapshot, and the stream job (:class:`ddso.stream.GraphRefresh`) writes them
to the online store every ``stream.graph_refresh_s`` seconds. They are not model inputs.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import scipy.sparse as sp

KINDS: dict[str, str] = {"copurchase": "purchase", "coview": "view"}
"""Graph name -> the event type whose baskets (purchase lines, viewed products) build it."""
DAMPING = 0.85
TOLERANCE = 1e-12
"""PageRank stops when the L1 change of the rank vector (summing to 1) falls below this."""
MAX_ITERATIONS = 1_000
WALK_STEPS = 3
_WALK_CELLS = 4_000_000
"""Customers x items cells in one dense block of the walk (32 MB of float64)."""
_DENSE_ITEMS = 2_000
"""Up to this many products the walk's step matrix is dense (at most 32 MB): co-view graphs
are dense enough that BLAS beats a sparse product several times over."""

ITEM_COLUMNS: tuple[str, ...] = tuple(f"{g}_{f}" for g in KINDS for f in ("degree", "pagerank"))
"""Per-product features (rows keyed by ``product_id``)."""
CUSTOMER_COLUMNS: tuple[str, ...] = tuple(
    f"{g}_{f}"
    for g in KINDS
    for f in ("degree_mean", "pagerank_mean", "overlap", f"walk_{WALK_STEPS}")
)
"""Per-customer features (rows keyed by ``customer_id``)."""
INTERACTION_COLUMNS = ("customer_id", "kind", "basket_id", "product_id")


# -- events -> interactions ---------------------------------------------------------------


def _table(events: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(events, pa.Table):
        return events
    return pa.Table.from_pandas(events, preserve_index=False)


def _view_ids(views: pa.Table) -> tuple[pa.Array, pa.Array]:
    """Session and product ids of view events, from their columns or their JSON payload.

    The generated event table has them as columns; the offline store keeps them only in
    ``payload`` (its canonical JSON).
    """
    if "product_id" in views.column_names and "session_id" in views.column_names:
        return (
            views["session_id"].combine_chunks(),
            views["product_id"].combine_chunks(),
        )
    if views.num_rows == 0:
        return pa.array([], pa.string()), pa.array([], pa.string())
    ndjson = "\n".join(views["payload"].to_pylist()).encode()
    parsed = pa_json.read_json(
        io.BytesIO(ndjson),
        parse_options=pa_json.ParseOptions(
            explicit_schema=pa.schema([("session_id", pa.string()), ("product_id", pa.string())]),
            unexpected_field_behavior="ignore",
        ),
    )
    return parsed["session_id"].combine_chunks(), parsed["product_id"].combine_chunks()


def interactions(events: pa.Table | pd.DataFrame, until: datetime | None = None) -> pd.DataFrame:
    """Distinct (customer, kind, basket, product) rows of purchases and views.

    ``events`` is the generated event table or an offline-store read (columns
    ``customer_id``, ``type``, ``event_time``, ``event_id``, ``lines`` and either
    ``session_id``/``product_id`` or ``payload``). A purchase's basket is its event, a view's
    basket its session. Events after ``until`` are dropped.
    """
    table = _table(events)
    if until is not None:
        table = table.filter(pc.field("event_time") <= pa.scalar(until, pa.timestamp("us", "UTC")))
    kind = table["type"]
    parts = []
    buys = table.filter(pc.equal(kind, "purchase"))
    if buys.num_rows:
        lines = buys["lines"].combine_chunks()
        parents = pc.list_parent_indices(lines)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": buys["customer_id"].take(parents).to_numpy(),
                    "kind": "purchase",
                    "basket_id": buys["event_id"].take(parents).to_numpy(),
                    "product_id": pc.list_flatten(lines)
                    .field("product_id")
                    .to_numpy(zero_copy_only=False),
                }
            )
        )
    views = table.filter(pc.equal(kind, "view"))
    if views.num_rows:
        session, product = _view_ids(views)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": views["customer_id"].to_numpy(),
                    "kind": "view",
                    "basket_id": session.to_numpy(zero_copy_only=False),
                    "product_id": product.to_numpy(zero_copy_only=False),
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in INTERACTION_COLUMNS})
    rows = pd.concat(parts, ignore_index=True).astype(object)
    return rows.drop_duplicates(ignore_index=True)


# -- the graph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemGraph:
    """One kind's graphs: ``items`` and ``customers`` (sorted ids) index the matrices."""

    items: np.ndarray
    customers: np.ndarray
    cooccurrence: sp.csr_array
    """``W``: items x items, baskets holding both products."""
    bipartite: sp.csr_array
    """``B``: customers x items, 1.0 where the customer has the product."""
    own_degree: sp.csr_array
    """``Y``: customers x items, the customer's own baskets' share of ``W``'s row sums."""

    def restrict(self, customers: Iterable[str]) -> ItemGraph:
        """The same item graph with only these customers' rows of ``B`` and ``Y``.

        A customer's features read only its own rows and the global ``W``, so
        :func:`customer_features` of the restricted graph gives those customers' rows of the
        whole one, at a cost in their number: the stream refreshes a few customers at a time.
        Ids not in the graph are ignored.
        """
        rows = np.flatnonzero(np.isin(self.customers, np.array(list(customers), dtype=str)))
        return ItemGraph(
            items=self.items,
            customers=self.customers[rows],
            cooccurrence=self.cooccurrence,
            bipartite=self.bipartite[rows],
            own_degree=self.own_degree[rows],
        )


def _csr(rows, cols, values, shape) -> sp.csr_array:
    """A canonical CSR (duplicates summed, indices sorted), so equal graphs are equal arrays."""
    m = sp.coo_array(
        (np.asarray(values, dtype=np.float64), (np.asarray(rows), np.asarray(cols))), shape=shape
    ).tocsr()
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def build_graph(rows: pd.DataFrame, graph: str) -> ItemGraph:
    """The item and bipartite graphs of one kind (``copurchase`` or ``coview``) in batch."""
    r = rows[rows["kind"] == KINDS[graph]]
    items, item_idx = np.unique(r["product_id"].to_numpy(dtype=str), return_inverse=True)
    customers, cust_idx = np.unique(r["customer_id"].to_numpy(dtype=str), return_inverse=True)
    basket_key = r["customer_id"].astype(str) + "\x1f" + r["basket_id"].astype(str)
    baskets, basket_idx = np.unique(basket_key.to_numpy(dtype=str), return_inverse=True)
    n_i, n_c = len(items), len(customers)
    # X: baskets x items (each row of `rows` is one distinct basket-product pair).
    x = _csr(basket_idx, item_idx, np.ones(len(r)), (len(baskets), n_i))
    w = (x.T @ x).tocoo()
    off = w.row != w.col
    size = np.bincount(basket_idx, minlength=len(baskets))
    return ItemGraph(
        items=items,
        customers=customers,
        cooccurrence=_csr(w.row[off], w.col[off], w.data[off], (n_i, n_i)),
        bipartite=_csr(cust_idx, item_idx, np.ones(len(r)), (n_c, n_i)).sign(),
        own_degree=_csr(cust_idx, item_idx, size[basket_idx] - 1, (n_c, n_i)),
    )


def pagerank(
    adjacency: sp.csr_array,
    damping: float = DAMPING,
    tol: float = TOLERANCE,
    max_iter: int = MAX_ITERATIONS,
) -> np.ndarray:
    """PageRank of a weighted graph by power iteration (ranks sum to 1).

    A step follows an edge with probability proportional to its weight; with probability
    ``1 - damping``, and always from a node without edges, it jumps to a node chosen
    uniformly. Iterates ``r <- damping * (r P + dangling(r) / n) + (1 - damping) / n`` from the
    uniform vector until the L1 change is below ``tol`` (the error is then below
    ``tol * damping / (1 - damping)``) or ``max_iter`` steps.
    """
    n = adjacency.shape[0]
    if n == 0:
        return np.zeros(0)
    out = np.asarray(adjacency.sum(axis=1)).ravel()
    dangling = out == 0
    inv = np.divide(1.0, out, out=np.zeros(n), where=~dangling)
    transition_t = (sp.diags_array(inv) @ adjacency).T.tocsr()
    r = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        new = damping * (transition_t @ r + r[dangling].sum() / n) + (1.0 - damping) / n
        change = np.abs(new - r).sum()
        r = new
        if change < tol:
            break
    return r / r.sum()


def item_features(graph: ItemGraph, name: str) -> pd.DataFrame:
    """``{name}_degree`` and ``{name}_pagerank`` (x number of items) per product."""
    w = graph.cooccurrence
    return pd.DataFrame(
        {
            "product_id": graph.items,
            f"{name}_degree": np.diff(w.indptr).astype(np.float64),
            f"{name}_pagerank": pagerank(w) * len(graph.items),
        }
    )


def _walk(graph: ItemGraph) -> np.ndarray:
    """Mean over 1..WALK_STEPS steps of the walk's probability of standing on own items."""
    w, b = graph.cooccurrence, graph.bipartite
    out = np.asarray(w.sum(axis=1)).ravel()
    # Rows of products without neighbours stay zero: the walk ends there.
    step = sp.diags_array(np.divide(1.0, out, out=np.zeros(len(out)), where=out > 0)) @ w
    if len(graph.items) <= _DENSE_ITEMS:
        step = step.toarray()
    n_own = np.asarray(b.sum(axis=1)).ravel()
    total = np.zeros(b.shape[0])
    # After one step a walk has spread over most products: dense blocks beat sparse ones.
    rows = max(1, _WALK_CELLS // max(len(graph.items), 1))
    for lo in range(0, b.shape[0], rows):
        own = b[lo : lo + rows].toarray()
        p = own / n_own[lo : lo + rows, None]
        for _ in range(WALK_STEPS):
            p = p @ step
            total[lo : lo + rows] += (p * own).sum(axis=1)
    return total / WALK_STEPS


def customer_features(graph: ItemGraph, name: str) -> pd.DataFrame:
    """The four customer features of one graph (see the module docstring), per customer."""
    w, b = graph.cooccurrence, graph.bipartite
    items = item_features(graph, name)
    n_own = np.asarray(b.sum(axis=1)).ravel()

    def mean_over_own(values: np.ndarray) -> np.ndarray:
        return (b @ values) / np.maximum(n_own, 1)

    # sum_{j in S} W[i, j] on each own product i, minus the customer's own baskets' part.
    others = (b @ w).multiply(b) - graph.own_degree
    shared = np.asarray((others > 0).sum(axis=1)).ravel()
    return pd.DataFrame(
        {
            "customer_id": graph.customers,
            f"{name}_degree_mean": mean_over_own(items[f"{name}_degree"].to_numpy()),
            f"{name}_pagerank_mean": mean_over_own(items[f"{name}_pagerank"].to_numpy()),
            f"{name}_overlap": shared / np.maximum(n_own, 1),
            f"{name}_walk_{WALK_STEPS}": _walk(graph),
        }
    )


def _join(frames: list[pd.DataFrame], key: str, columns: tuple[str, ...]) -> pd.DataFrame:
    out = frames[0]
    for f in frames[1:]:
        out = out.merge(f, on=key, how="outer")
    out = out.sort_values(key, ignore_index=True)
    return out[[key, *columns]].fillna(0.0)


def customer_table(
    graphs: dict[str, ItemGraph], customers: Iterable[str] | None = None
) -> pd.DataFrame:
    """:data:`CUSTOMER_COLUMNS` of every customer of the graphs, or only of ``customers``.

    0.0 where a customer has no data of a kind; ids in no graph get no row.
    """
    if customers is not None:
        wanted = list(customers)
        graphs = {name: g.restrict(wanted) for name, g in graphs.items()}
    return _join(
        [customer_features(g, name) for name, g in graphs.items()], "customer_id", CUSTOMER_COLUMNS
    )


def features_from_graphs(graphs: dict[str, ItemGraph]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customer features, item features) of built graphs; 0.0 where a kind has no data."""
    items = [item_features(g, name) for name, g in graphs.items()]
    return customer_table(graphs), _join(items, "product_id", ITEM_COLUMNS)


def graph_features(
    events: pa.Table | pd.DataFrame, until: datetime | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Batch: events -> (customer features, item features) as of ``until``."""
    rows = interactions(events, until)
    return features_from_graphs({name: build_graph(rows, name) for name in KINDS})


# -- streaming ----------------------------------------------------------------------------


class _KindState:
    """Incremental ``W``, ``B`` and ``Y`` of one kind, keyed by ids until a graph is built."""

    def __init__(self) -> None:
        self.baskets: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.pairs: dict[tuple[str, str], int] = defaultdict(int)
        self.own: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, customer: str, basket: str, product: str) -> None:
        held = self.baskets[(customer, basket)]
        if product in held:
            return
        for other in held:
            self.pairs[(product, other)] += 1
            self.pairs[(other, product)] += 1
            self.own[(customer, other)] += 1
        self.own[(customer, product)] += len(held)
        held.add(product)

    def graph(self) -> ItemGraph:
        own = list(self.own.items())
        items = np.unique(np.array([p for _, p in self.own] or [], dtype=str))
        customers = np.unique(np.array([c for c, _ in self.own] or [], dtype=str))
        n_i, n_c = len(items), len(customers)

        def idx(vocab: np.ndarray, ids: list[str]) -> np.ndarray:
            return np.searchsorted(vocab, np.array(ids, dtype=str)).astype(np.int64)

        pairs = list(self.pairs.items())
        cust = idx(customers, [c for (c, _), _ in own])
        item = idx(items, [p for (_, p), _ in own])
        return ItemGraph(
            items=items,
            customers=customers,
            cooccurrence=_csr(
                idx(items, [a for (a, _), _ in pairs]),
                idx(items, [b for (_, b), _ in pairs]),
                [n for _, n in pairs],
                (n_i, n_i),
            ),
            bipartite=_csr(cust, item, np.ones(len(own)), (n_c, n_i)),
            own_degree=_csr(cust, item, [n for _, n in own], (n_c, n_i)),
        )


class GraphState:
    """The streaming form: ``update(events)`` per micro-batch, ``features()`` when asked.

    Keeps every basket as a set of products and the counts ``W``, ``B``, ``Y`` up to date
    with each new basket-product pair, so a batch costs work in its own size (plus the
    basket's current size); PageRank and the walks are global and run in :meth:`features`.
    Equal to :func:`graph_features` on the union of the batches, in any order, with any
    batch repeated.
    """

    def __init__(self) -> None:
        self._kinds = {name: _KindState() for name in KINDS}

    def update(self, events: pa.Table | pd.DataFrame, until: datetime | None = None) -> set[str]:
        """Fold one batch of events (the same columns :func:`interactions` reads).

        Returns the customers the batch had purchases or views of: the ones whose own
        baskets changed, which the stream job refreshes.
        """
        rows = interactions(events, until)
        for name, kind in KINDS.items():
            state = self._kinds[name]
            r = rows[rows["kind"] == kind]
            for c, basket, p in zip(r["customer_id"], r["basket_id"], r["product_id"], strict=True):
                state.add(str(c), str(basket), str(p))
        return {str(c) for c in rows["customer_id"].unique()}

    def graph(self, name: str) -> ItemGraph:
        """The current graph of one kind, in the batch's exact form."""
        return self._kinds[name].graph()

    def customers(self) -> set[str]:
        """Every customer with a purchase or a view folded so far."""
        return {c for kind in self._kinds.values() for c, _ in kind.baskets}

    def customer_features(self, customers: Iterable[str] | None = None) -> pd.DataFrame:
        """:func:`customer_table` of everything folded so far, for all or some customers."""
        return customer_table({name: self.graph(name) for name in KINDS}, customers)

    def features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(customer features, item features) of everything folded so far."""
        return features_from_graphs({name: self.graph(name) for name in KINDS})
