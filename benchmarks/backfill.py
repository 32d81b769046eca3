"""Benchmark of the Spark backfill (:mod:`pipelines.backfill`): sale lines per second.

The target is a backfill of 10M sale lines (elements of purchases' ``lines``) within 60 s.
Running the generator to that size would take far longer than the backfill (it writes ~47
events per customer-year, few of them purchases), so the input is *synthesized* with numpy
and written as Parquet with the columns the backfill reads from an events folder
(``customer_id``, ``type``, ``event_time``, ``lines`` of the generator's line type):
purchases of 1-3 lines each, spread uniformly over one year and sorted by customer and time
like the generator's output, plus ``other_per_purchase`` non-purchase events (views, clicks,
sessions, cart adds, CRM calls) per purchase, and one financial profile per customer.

Options: ``sale_lines`` (default 10000000), ``customers`` (default 100000),
``other_per_purchase`` (default 1), ``master`` (default local[*]), ``shuffle_partitions``
(default 4), ``seed`` (default 0). ``wall_s`` times the Spark job only (plan, run, write the
feature table); input synthesis and the Spark session start are reported apart. Input and
output go to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from ddso.data.event_table import LINE_TYPE
from ddso.data.tables import TIMESTAMP
from pipelines.backfill import spark_customer_features, spark_session

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
_OTHER_TYPES = np.array(["view", "click", "session_start", "cart_add", "crm_call"])
_FILES = 8


def _purchase_lines(rng: np.random.Generator, sale_lines: int) -> np.ndarray:
    """Lines per purchase (1-3), summing to exactly ``sale_lines``."""
    # sale_lines draws of at least one line each always reach the total.
    sizes = rng.integers(1, 4, size=sale_lines)
    cut = int(np.searchsorted(np.cumsum(sizes), sale_lines))
    sizes = sizes[: cut + 1]
    sizes[-1] -= int(sizes.sum()) - sale_lines
    return sizes[sizes > 0]


def synthesize(
    out: Path, sale_lines: int, customers: int, other_per_purchase: float, seed: int
) -> dict[str, int]:
    """Write ``out/events/`` and ``out/financial_profiles.parquet``; return the counts."""
    rng = np.random.default_rng(seed)
    sizes = _purchase_lines(rng, sale_lines)
    n_purchases = len(sizes)
    n_other = int(n_purchases * other_per_purchase)
    n = n_purchases + n_other
    cust = rng.integers(0, customers, size=n)
    year_us = 365 * 86_400 * 1_000_000
    t = int(AS_OF.timestamp() * 1e6) - rng.integers(1, year_us, size=n)
    order = np.lexsort((t, cust))
    is_purchase = order < n_purchases
    kinds = np.where(is_purchase, "purchase", _OTHER_TYPES[rng.integers(0, 5, size=n)])
    # Lines of the purchases in output order: purchase k (k < n_purchases) owns sizes[k] lines.
    counts = np.where(is_purchase, sizes[np.minimum(order, n_purchases - 1)], 0)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    products = pa.array([f"sku{i:04d}" for i in range(500)])
    line_values = pa.StructArray.from_arrays(
        [
            products.take(pa.array(rng.integers(0, 500, size=sale_lines))),
            pa.array(rng.integers(1, 4, size=sale_lines)),
            pa.array(np.round(rng.uniform(5, 500, size=sale_lines), 2)),
            pa.array(np.where(rng.random(sale_lines) < 0.3, 0.1, 0.0)),
        ],
        fields=list(LINE_TYPE),
    )
    lines = pa.ListArray.from_arrays(pa.array(offsets), line_values, mask=pa.array(~is_purchase))
    ids = _customer_ids(customers)
    events = pa.table(
        {
            "customer_id": ids.take(pa.array(cust[order])),
            "type": pa.array(kinds, pa.string()),
            "event_time": pa.array(t[order].astype("datetime64[us]")).cast(TIMESTAMP),
            "lines": lines,
        }
    )
    (out / "events").mkdir(parents=True)
    step = -(-n // _FILES)
    for k in range(_FILES):
        pq.write_table(events.slice(k * step, step), out / "events" / f"part-{k:05d}.parquet")
    pq.write_table(_profiles(rng, ids), out / "financial_profiles.parquet")
    return {"events": n, "purchases": n_purchases}


def _customer_ids(customers: int) -> pa.Array:
    return pa.array([f"c{i:08d}" for i in range(customers)])


def _profiles(rng: np.random.Generator, ids: pa.Array) -> pa.Table:
    """One FinancialProfile row per customer: one income stream, one card debt."""
    customers = len(ids)
    income = pa.StructArray.from_arrays(
        [pa.array(rng.uniform(1_000, 8_000, customers)), pa.array(rng.uniform(0, 1, customers))],
        names=["monthly_amount", "stability"],
    )
    debt = pa.StructArray.from_arrays(
        [
            pa.array(rng.uniform(0, 5_000, customers)),
            pa.array(rng.uniform(0, 300, customers)),
            pa.array(rng.uniform(1_000, 10_000, customers)),
        ],
        names=["balance", "monthly_payment", "credit_limit"],
    )
    one_each = pa.array(np.arange(customers + 1, dtype=np.int32))
    due = rng.integers(0, 13, customers)
    return pa.table(
        {
            "customer_id": ids,
            "income_streams": pa.ListArray.from_arrays(one_each, income),
            "debts": pa.ListArray.from_arrays(one_each, debt),
            "payments_due_12m": pa.array(due),
            "payments_on_time_12m": pa.array(due - rng.integers(0, 2, customers).clip(0, due)),
            "delinquencies_24m": pa.array(rng.integers(0, 2, customers)),
            "savings_balance": pa.array(rng.uniform(0, 20_000, customers)),
        }
    )


class _PeakRss:
    """Peak resident memory of this process and its children (the Spark JVM, its Python
    workers), sampled in a thread: ru_maxrss would miss the JVM entirely."""

    def __init__(self, every_s: float = 0.2):
        self.peak = 0
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue  # a worker that exited between listing and reading
            self.peak = max(self.peak, total)
            self._stop.wait(self._every)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Synthesize the input, run one backfill, report its throughput (see module docstring)."""
    sale_lines = int(options.get("sale_lines", 10_000_000))
    customers = int(options.get("customers", 100_000))
    master = options.get("master", "local[*]")
    partitions = int(options.get("shuffle_partitions", 4))
    with tempfile.TemporaryDirectory(prefix="ddso-bench-backfill-") as tmp, _PeakRss() as rss:
        root = Path(tmp)
        began = time.perf_counter()
        counts = synthesize(
            root / "in",
            sale_lines,
            customers,
            float(options.get("other_per_purchase", 1)),
            int(options.get("seed", 0)),
        )
        input_gen_s = time.perf_counter() - began
        began = time.perf_counter()
        spark = spark_session(master, partitions)
        session_s = time.perf_counter() - began
        try:
            began = time.perf_counter()
            features = spark_customer_features(
                spark,
                str(root / "in" / "events"),
                str(root / "in" / "financial_profiles.parquet"),
                AS_OF,
            )
            features.write.parquet(str(root / "features"))
            wall = time.perf_counter() - began
        finally:
            spark.stop()
        feature_rows = sum(
            pq.read_metadata(p).num_rows for p in (root / "features").glob("part-*.parquet")
        )
    return {
        "sale_lines": sale_lines,
        "events": counts["events"],
        "purchases": counts["purchases"],
        "customers": customers,
        "feature_rows": feature_rows,
        "wall_s": round(wall, 3),
        "rows_per_s": round(sale_lines / wall, 1),
        "input_gen_s": round(input_gen_s, 3),
        "session_start_s": round(session_s, 3),
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "spark_master": master,
        "shuffle_partitions": partitions,
    }
