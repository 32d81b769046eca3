"""Customer segments on a generated dataset: deep clustering against K-Means, and graph features.

Segments. Features as of ``as_of`` = the window's start plus ``cut_day`` days (midnight
UTC): the behaviour features of the events up to then and the financial profile, with the
cold-start value where a customer has none. Customers who churned at or before ``as_of`` are
left out. Outcomes in ``(as_of, end]``: conversion = an ``enrollment`` event, churn = a
``churn`` event. :func:`ddso.models.deep_cluster.compare` fits K-Means and the deep
clusterer (``seed`` as their ``random_state``) with ``k`` segments on those rows; a second
:class:`DeepClusterer` with the same arguments (and so the same labels) gives the labels to
score against the generator's latent segment. ``max_epochs`` bounds the autoencoder's
training. Keys:

- ``rows``, ``churned_before``, ``conversions``, ``churns``, ``conversion_rate``,
  ``churn_rate``; ``as_of`` (ISO date);
- ``kmeans_silhouette``, ``deep_silhouette``: silhouette in the standardised feature space;
  ``deep_silhouette_embedding``: of the deep clustering in its own embedding space;
- for ``m`` in ``kmeans``, ``deep`` and ``o`` in ``conversion``, ``churn``:
  ``{m}_{o}_separation`` (:func:`~ddso.models.deep_cluster.rate_separation`, 0 to 1),
  ``{m}_{o}_p_value`` (4 significant digits), ``{m}_{o}_min_rate``, ``{m}_{o}_max_rate``;
- ``{m}_largest_share``, ``{m}_smallest_share``: of the segments' shares of the rows;
- ``kmeans_deep_ari``: agreement of the two labelings; ``{m}_truth_ari``: of each with the
  latent segment; ``deep_epochs``; ``compare_s``, ``deep_refit_s``.

Graph features (:mod:`ddso.features.graph`) of every event of the window, ``graph_events``:

- ``graph_batch_s``: the batch path (``interactions`` -> ``build_graph`` per kind ->
  ``features_from_graphs``, what ``graph_features`` runs);
- ``graph_stream_update_s``: :meth:`GraphState.update` over slices of ``stream_batch``
  events; ``graph_stream_events_per_s`` = ``graph_events`` over it;
  ``graph_stream_features_s``: one :meth:`GraphState.features`; ``graph_stream_s``: both;
- ``graph_batch_equals_stream``: 1 if both paths give exactly equal customer and item
  features, else 0;
- ``graph_{kind}_edges`` (item pairs with a shared basket), ``graph_{kind}_items``,
  ``graph_{kind}_customers`` for ``copurchase`` and ``coview``;
  ``graph_customers``, ``graph_items``: rows of the feature tables.

Options: ``customers`` (20000), ``days`` (365), ``seed`` (7), ``cut_day`` (270; 1 to
``days - 1``), ``k`` (4), ``max_epochs`` (300, the :class:`DeepClusterer` default),
``stream_batch`` (20000), ``skip`` (comma list of ``segments``, ``graph``). Floats are
rounded to 4 decimals, times to 3. The dataset goes to a temporary directory; ``generate_s``
is the time it took.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import adjusted_rand_score

from ddso.data.dataset import Dataset, read_parquet
from ddso.data.generator import GeneratorConfig, generate
from ddso.errors import UserError
from ddso.features import behaviour, financial, graph
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from ddso.models.deep_cluster import DeepClusterer, compare

PARTS = ("segments", "graph")


def point_in_time(
    events: pa.Table, profiles: pd.DataFrame, as_of: datetime, end: datetime
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, int]:
    """(features as of ``as_of``, conversion, churn, customers left out as churned before).

    Rows are the customers with a financial profile or an event by ``as_of`` who had not
    churned by then; conversion and churn are 0/1 per row for ``(as_of, end]``.
    """
    frame = financial.financial_features(profiles).merge(
        behaviour.customer_features(events, as_of), on="customer_id", how="outer"
    )
    defaults = cold_start_features()
    for col in CUSTOMER_FEATURES:
        frame[col] = frame[col].fillna(defaults[col]).astype("float64")
    kinds = events.select(["customer_id", "type", "event_time"]).to_pandas()
    t = kinds["event_time"]
    churned_before = set(kinds.loc[(kinds["type"] == "churn") & (t <= as_of), "customer_id"])
    after = kinds[(t > as_of) & (t <= end)]
    left = frame["customer_id"].isin(churned_before)
    frame = frame[~left].reset_index(drop=True)

    def outcome(event_type: str) -> np.ndarray:
        ids = after.loc[after["type"] == event_type, "customer_id"]
        return frame["customer_id"].isin(ids).to_numpy().astype(np.int64)

    return frame, outcome("enrollment"), outcome("churn"), int(left.sum())


def _segments(data: Dataset, events: pa.Table, cut_day: int, k: int, seed: int,
              max_epochs: int) -> dict[str, float | int | str]:
    start = datetime.fromisoformat(data.manifest["start"]).replace(tzinfo=UTC)
    end = datetime.fromisoformat(data.manifest["end"]).replace(tzinfo=UTC)
    as_of = start + timedelta(days=cut_day)
    frame, conversion, churn, churned_before = point_in_time(
        events, data.table("financial_profiles"), as_of, end)
    began = time.perf_counter()
    result = compare(frame, conversion, churn, k=k, random_state=seed, max_epochs=max_epochs)
    compare_s = time.perf_counter() - began
    began = time.perf_counter()
    deep = DeepClusterer(k=k, max_epochs=max_epochs, random_state=seed).fit(frame)
    refit_s = time.perf_counter() - began
    truth = frame[["customer_id"]].merge(data.truth()[["customer_id", "segment"]],
                                         on="customer_id", how="left")["segment"].astype(str)
    out: dict[str, float | int | str] = {
        "as_of": as_of.date().isoformat(), "rows": len(frame), "churned_before": churned_before,
        "conversions": int(conversion.sum()), "churns": int(churn.sum()),
        "conversion_rate": round(float(conversion.mean()), 4),
        "churn_rate": round(float(churn.mean()), 4),
    }
    for method in ("kmeans", "deep"):
        res = result[method]
        out[f"{method}_silhouette"] = round(res["silhouette_standardised"], 4)
        if method == "deep":
            out["deep_silhouette_embedding"] = round(res["silhouette_embedding"], 4)
        for o in ("conversion", "churn"):
            sep = res[o]
            out[f"{method}_{o}_separation"] = round(sep["separation"], 4)
            out[f"{method}_{o}_p_value"] = float(f"{sep['p_value']:.4g}")
            out[f"{method}_{o}_min_rate"] = round(sep["min_rate"], 4)
            out[f"{method}_{o}_max_rate"] = round(sep["max_rate"], 4)
        out[f"{method}_largest_share"] = max(res["segment_shares"])
        out[f"{method}_smallest_share"] = min(res["segment_shares"])
    out["kmeans_deep_ari"] = round(result["agreement_ari"], 4)
    for method, labels in (("kmeans", deep.segmenter_.labels_), ("deep", deep.labels_)):
        out[f"{method}_truth_ari"] = round(float(adjusted_rand_score(truth, labels)), 4)
    out["deep_epochs"] = result["deep"]["epochs"]
    out["compare_s"] = round(compare_s, 3)
    out["deep_refit_s"] = round(refit_s, 3)
    return out


def _graph(events: pa.Table, stream_batch: int) -> dict[str, float | int]:
    began = time.perf_counter()
    rows = graph.interactions(events)
    graphs = {name: graph.build_graph(rows, name) for name in graph.KINDS}
    customers, items = graph.features_from_graphs(graphs)
    batch_s = time.perf_counter() - began
    state = graph.GraphState()
    began = time.perf_counter()
    for lo in range(0, events.num_rows, stream_batch):
        state.update(events.slice(lo, stream_batch))
    update_s = time.perf_counter() - began
    began = time.perf_counter()
    stream_customers, stream_items = state.features()
    features_s = time.perf_counter() - began
    out: dict[str, float | int] = {
        "graph_events": events.num_rows,
        "graph_batch_s": round(batch_s, 3),
        "graph_stream_update_s": round(update_s, 3),
        "graph_stream_features_s": round(features_s, 3),
        "graph_stream_s": round(update_s + features_s, 3),
        "graph_stream_events_per_s": round(events.num_rows / update_s, 1),
        "graph_batch_equals_stream": int(customers.equals(stream_customers)
                                         and items.equals(stream_items)),
        "graph_customers": len(customers),
        "graph_items": len(items),
    }
    for name, g in graphs.items():
        out[f"graph_{name}_edges"] = g.cooccurrence.nnz // 2  # W is symmetric
        out[f"graph_{name}_items"] = len(g.items)
        out[f"graph_{name}_customers"] = len(g.customers)
    return out


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Generate a dataset, then measure segments and graph features (see module docstring)."""
    cfg = GeneratorConfig(customers=int(options.get("customers", 20_000)),
                          days=int(options.get("days", 365)), seed=int(options.get("seed", 7)))
    cut_day = int(options.get("cut_day", 270))
    k = int(options.get("k", 4))
    max_epochs = int(options.get("max_epochs", 300))
    stream_batch = int(options.get("stream_batch", 20_000))
    skip = {s.strip() for s in options.get("skip", "").split(",") if s.strip()}
    if not 0 < cut_day < cfg.days:
        raise UserError(f"cut_day={cut_day}: must lie between 1 and days - 1 = {cfg.days - 1}, "
                        "so that there are days before and after it")
    if max_epochs < 1:
        raise UserError(f"max_epochs={max_epochs}: the autoencoder needs at least 1 epoch")
    if stream_batch < 1:
        raise UserError(f"stream_batch={stream_batch}: must be at least 1 event")
    if skip - set(PARTS):
        raise UserError(f"skip={options['skip']!r}: unknown part(s) "
                        f"{', '.join(sorted(skip - set(PARTS)))}; choose from {', '.join(PARTS)}")
    metrics: dict[str, float | int | str] = {
        "customers": cfg.customers, "days": cfg.days, "seed": cfg.seed, "cut_day": cut_day,
        "k": k, "max_epochs": max_epochs,
    }
    with tempfile.TemporaryDirectory(prefix="ddso-bench-segments-") as tmp:
        began = time.perf_counter()
        generate(cfg, Path(tmp) / "data", progress=False)
        metrics["generate_s"] = round(time.perf_counter() - began, 3)
        data = Dataset(Path(tmp) / "data")
        events = pa.concat_tables([read_parquet(f) for f in data.event_files()])
        if "segments" not in skip:
            metrics.update(_segments(data, events, cut_day, k, cfg.seed, max_epochs))
        if "graph" not in skip:
            metrics.update(_graph(events, stream_batch))
    return metrics
