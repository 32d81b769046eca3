"""Spark backfill: events + financial profiles -> the customer feature table as of a time.

The Spark twin of :mod:`pipelines.featurize`. The plan calls the very same pure functions of
:mod:`ddso.features` (no Spark re-implementation of any feature):

1. ``mapInArrow``: :func:`behaviour.event_window_rows` on each Arrow batch of raw events
   (steps 1 and 2: one window row per event at or before the as-of time);
2. native ``groupBy("customer_id").agg(sum/max/min)`` over :data:`behaviour.SUM_COLUMNS`,
   :data:`behaviour.MAX_COLUMNS` and :data:`behaviour.MIN_COLUMNS` (Spark's map-side partial
   aggregation is the associative merge that :func:`behaviour.aggregate` defines);
3. ``mapInArrow``: :func:`behaviour.finalize` per batch of customers;
4. ``mapInArrow``: :func:`financial.financial_features` over the profiles, then a full outer
   join, and cold-start defaults for whatever side is missing (as ``featurize`` does);
5. the graph features (:mod:`ddso.features.graph`): ``mapInArrow`` of
   :func:`graph.interactions` and a ``distinct`` give the basket-product rows; PageRank and
   the walks are global matrix computations, so the driver builds the graphs from those rows
   with :func:`graph.build_graph` and computes :func:`graph.customer_table`, which is left
   joined onto the snapshot (0.0 for a customer without purchases or views, as in batch).

    python -m pipelines.backfill --events .ddso/data/events \
        --profiles .ddso/data/warehouse/financial_profiles --out .ddso/offline
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from ddso.features import behaviour, financial, graph
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from pipelines._cli import parse_args
from pipelines.featurize import EVENT_COLUMNS, observation_end, snapshot_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Only what financial.financial_features reads: Parquet column pruning skips the rest.
PROFILE_COLUMNS = [
    "customer_id",
    "income_streams",
    "debts",
    "payments_due_12m",
    "payments_on_time_12m",
    "delinquencies_24m",
    "savings_balance",
]

LINE_FIELDS = ("quantity", "unit_price", "discount")
# The event columns the feature functions read, and of the purchase lines only the numbers:
# Parquet then skips every other column, the product id strings nested in lines included.
EVENT_READ_SCHEMA = (
    "customer_id string, type string, event_time timestamp, "
    "lines array<struct<quantity: bigint, unit_price: double, discount: double>>"
)


@dataclass
class Args:
    """Backfill the customer feature table as of a point in time with Spark."""

    events: str
    """An `events/` folder: of a dataset from `ddso data generate`, or of the offline store."""
    profiles: str
    """The warehouse `financial_profiles/` folder (Parquet)."""
    out: str
    """Offline-store folder the feature snapshot (a Parquet folder) is written to."""
    as_of: str | None = None
    """Feature time, ISO-8601 UTC; default: the end of the observation window of the events."""
    master: str = "local[*]"
    """Spark master URL, e.g. local[2] or spark://host:7077."""
    shuffle_partitions: int = 4
    """Partitions of the groupBy/join shuffles; a few per core is enough on small machines."""


def spark_session(master: str = "local[*]", shuffle_partitions: int = 4) -> SparkSession:
    """A Spark session sized for a small machine: UTC, Arrow on, no UI, quiet logs."""
    from pyspark.sql import SparkSession

    # Python workers must import ddso and pandas: run them on this interpreter, not the one on
    # PATH. PySpark reads this variable (not a conf key) when it creates the context.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(master)
        .appName("ddso-backfill")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Day windows are UTC calendar days; Arrow timestamps carry the session time zone.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # Each Arrow batch pays fixed pandas/numpy overhead in the pure functions: make it rare.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        # Few, larger input splits: fewer Python batches and tasks on two cores.
        .config("spark.sql.files.maxPartitionBytes", str(256 * 1024 * 1024))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _float_schema(columns: tuple[str, ...] | list[str]) -> pa.Schema:
    return pa.schema([("customer_id", pa.string()), *((c, pa.float64()) for c in columns)])


def _spark_ddl(schema: pa.Schema) -> str:
    return ", ".join(
        f"`{f.name}` {'string' if f.type == pa.string() else 'double'}" for f in schema
    )


def _arrow_map(
    fn: Callable[[pa.Table], pd.DataFrame], schema: pa.Schema
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Wrap a pure ``table -> pandas`` function as a ``mapInArrow`` function with ``schema``."""

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            frame = fn(pa.Table.from_batches([batch]))
            # An explicit schema: the Spark side declares doubles, pandas may infer otherwise.
            yield from pa.Table.from_pandas(
                frame[schema.names], schema=schema, preserve_index=False
            ).to_batches()

    return apply


WINDOW_SCHEMA = _float_schema(
    [*behaviour.SUM_COLUMNS, *behaviour.MAX_COLUMNS, *behaviour.MIN_COLUMNS]
)
"""Arrow schema of the rows :func:`behaviour.event_window_rows` emits."""
BEHAVIOUR_SCHEMA = _float_schema(behaviour.FEATURE_COLUMNS)
FINANCIAL_SCHEMA = _float_schema(financial.FEATURE_COLUMNS)


def _nest_lines(table: pa.Table) -> pa.Table:
    """Rebuild the ``lines`` list<struct> column from the per-field lists Spark ships."""
    parts = [table[f"line_{f}"].combine_chunks() for f in LINE_FIELDS]
    # All three lists come from the same `lines` value, so they share offsets and nulls.
    values = pa.StructArray.from_arrays([p.values for p in parts], names=list(LINE_FIELDS))
    lines = pa.ListArray.from_arrays(parts[0].offsets, values, mask=parts[0].is_null())
    return table.drop_columns([f"line_{f}" for f in LINE_FIELDS]).append_column("lines", lines)


def behaviour_frame(events: DataFrame, as_of: datetime) -> DataFrame:
    """Raw events -> one behavioural feature row per customer with events up to ``as_of``."""
    from pyspark.sql import functions as F

    def window_rows(table: pa.Table) -> pd.DataFrame:
        # Merging each batch's rows per customer first (the same associative merge the groupBy
        # finishes) ships one row per customer and batch to the JVM instead of one per event.
        return behaviour.aggregate(behaviour.event_window_rows(_nest_lines(table), as_of))

    def features(table: pa.Table) -> pd.DataFrame:
        return behaviour.finalize(table.to_pandas(), as_of)

    # The filter is pushed into the Parquet scan (old as-of times skip most row groups);
    # contributions() still applies the exact rule. Lines travel as one list column per field:
    # Spark's Arrow writer is markedly slower on a list of structs than on lists of numbers.
    shipped = events.where(F.col("event_time") <= F.lit(as_of)).select(
        *(c for c in EVENT_COLUMNS if c != "lines"),
        *(F.col(f"lines.{f}").alias(f"line_{f}") for f in LINE_FIELDS),
    )
    rows = shipped.mapInArrow(_arrow_map(window_rows, WINDOW_SCHEMA), _spark_ddl(WINDOW_SCHEMA))
    aggregated = rows.groupBy("customer_id").agg(
        *(F.sum(c).alias(c) for c in behaviour.SUM_COLUMNS),
        *(F.max(c).alias(c) for c in behaviour.MAX_COLUMNS),
        *(F.min(c).alias(c) for c in behaviour.MIN_COLUMNS),
    )
    return aggregated.mapInArrow(
        _arrow_map(features, BEHAVIOUR_SCHEMA), _spark_ddl(BEHAVIOUR_SCHEMA)
    )


def financial_frame(profiles: DataFrame) -> DataFrame:
    """FinancialProfile rows -> one financial feature row per customer."""
    return profiles.select(*PROFILE_COLUMNS).mapInArrow(
        _arrow_map(financial.financial_features, FINANCIAL_SCHEMA), _spark_ddl(FINANCIAL_SCHEMA)
    )


def spark_customer_features(
    spark: SparkSession, events_path: str, profiles_path: str, as_of: datetime
) -> DataFrame:
    """Every customer with a profile or events: all of CUSTOMER_FEATURES as of ``as_of``.

    Customers missing on one side (no events before ``as_of``, or no profile) get that side's
    cold-start values, exactly as :func:`pipelines.featurize.customer_features` does.
    """
    behav = behaviour_frame(spark.read.schema(EVENT_READ_SCHEMA).parquet(events_path), as_of)
    fin = financial_frame(spark.read.parquet(profiles_path))
    # A USING join on the name coalesces customer_id from both sides of the outer join.
    merged = fin.join(behav, on="customer_id", how="full")
    defaults = cold_start_features()
    return merged.fillna({c: defaults[c] for c in CUSTOMER_FEATURES}).select(
        "customer_id", *CUSTOMER_FEATURES
    )


GRAPH_SCHEMA = pa.schema([(c, pa.string()) for c in graph.INTERACTION_COLUMNS])
"""Arrow schema of the rows :func:`graph.interactions` emits."""


def _nest_products(table: pa.Table) -> pa.Table:
    """Rebuild ``lines`` (product ids only) from the ``line_product_id`` list Spark ships."""
    ids = table["line_product_id"].combine_chunks()
    values = pa.StructArray.from_arrays([ids.values], names=["product_id"])
    lines = pa.ListArray.from_arrays(ids.offsets, values, mask=ids.is_null())
    return table.drop_columns(["line_product_id"]).append_column("lines", lines)


def graph_frame(spark: SparkSession, events_path: str, as_of: datetime) -> pd.DataFrame:
    """Raw events -> :data:`graph.CUSTOMER_COLUMNS` of every customer with purchases or views.

    Equal to ``graph.graph_features(events, as_of)[0]``: Spark finds the distinct
    basket-product rows, the driver runs the same graph functions on them.
    """
    from pyspark.sql import functions as F

    events = spark.read.parquet(events_path)
    # A generated dataset has the view's session and product as columns; the offline store
    # keeps them only in the event's JSON payload, which graph.interactions then parses.
    view_columns = (
        ["session_id", "product_id"]
        if {"session_id", "product_id"} <= set(events.columns)
        else ["payload"]
    )
    shipped = events.where(
        (F.col("event_time") <= F.lit(as_of)) & F.col("type").isin(*graph.KINDS.values())
    ).select(
        "event_id",
        "customer_id",
        "type",
        "event_time",
        *view_columns,
        F.col("lines.product_id").alias("line_product_id"),
    )

    def basket_rows(table: pa.Table) -> pd.DataFrame:
        return graph.interactions(_nest_products(table), as_of)

    rows = (
        shipped.mapInArrow(_arrow_map(basket_rows, GRAPH_SCHEMA), _spark_ddl(GRAPH_SCHEMA))
        .distinct()
        .toPandas()
    )
    return graph.customer_table({name: graph.build_graph(rows, name) for name in graph.KINDS})


def snapshot_frame(
    spark: SparkSession, events_path: str, profiles_path: str, as_of: datetime
) -> DataFrame:
    """The snapshot the backfill writes: :func:`spark_customer_features` and the graph ones.

    The graph features are not model inputs (``CUSTOMER_FEATURES`` is unchanged); they ride
    in the snapshot so that serving and training sets can read them by name.
    """
    features = spark_customer_features(spark, events_path, profiles_path, as_of)
    ddl = _spark_ddl(_float_schema(graph.CUSTOMER_COLUMNS))
    computed = graph_frame(spark, events_path, as_of)
    graphs = spark.createDataFrame(computed, schema=ddl)
    return features.join(graphs, on="customer_id", how="left").fillna(
        0.0, subset=list(graph.CUSTOMER_COLUMNS)
    )


def resolve_as_of(as_of: str | None, events_path: str) -> datetime:
    """``--as-of`` as an aware UTC time; default the end of the events' observation window."""
    if as_of:
        parsed = datetime.fromisoformat(as_of)
        # A naive ISO time is read as UTC, the time zone of every window in ddso.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return observation_end(Path(events_path).parent)


def main(args: Args) -> Path:
    as_of = resolve_as_of(args.as_of, args.events)
    spark = spark_session(args.master, args.shuffle_partitions)
    try:
        features = snapshot_frame(spark, args.events, args.profiles, as_of)
        path = snapshot_path(args.out, as_of)
        features.write.mode("overwrite").parquet(str(path))
        count = spark.read.parquet(str(path)).count()
    finally:
        spark.stop()
    print(f"backfill: {count} customers as of {as_of.isoformat()} -> {path}")
    return path


if __name__ == "__main__":
    main(parse_args(Args))
