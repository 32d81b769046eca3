"""The Spark backfill computes exactly what the one-machine and the streaming paths compute."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddso.data.event_table import EVENT_SCHEMA
from ddso.features import behaviour, financial, graph
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from ddso.io.publish import dataset_records
from ddso.schemas.events import parse_event
from ddso.stores.offline import OfflineStore, events_table
from ddso.stores.online import SnapshotStore
from pipelines.backfill import (
    PROFILE_COLUMNS,
    graph_frame,
    snapshot_frame,
    spark_customer_features,
    spark_session,
)
from pipelines.featurize import EVENT_COLUMNS, observation_end, snapshot_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

COUNT_FEATURES = [
    c
    for c in CUSTOMER_FEATURES
    if c.startswith(
        (
            "frequency_",
            "views_",
            "clicks_",
            "cart_adds_",
            "sessions_",
            "contacts_",
            "complaints_",
            "offers_",
        )
    )
]


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from ddso.data.generator import GeneratorConfig, generate

    out = tmp_path_factory.mktemp("backfill") / "data"
    generate(GeneratorConfig(customers=500, days=120, seed=13), out, progress=False)
    return out


def with_defaults(fin: pd.DataFrame, behav: pd.DataFrame) -> pd.DataFrame:
    """The featurize merge: outer join, cold-start values for the missing side, by customer."""
    merged = fin.merge(behav, on="customer_id", how="outer")
    defaults = cold_start_features()
    for col in CUSTOMER_FEATURES:
        merged[col] = merged[col].fillna(defaults[col]).astype("float64")
    return merged[["customer_id", *CUSTOMER_FEATURES]].sort_values("customer_id", ignore_index=True)


def spark_features(spark, events: Path, data: Path, as_of: datetime) -> pd.DataFrame:
    frame = spark_customer_features(
        spark, str(events), str(data / "warehouse" / "financial_profiles"), as_of
    ).toPandas()
    frame["customer_id"] = frame["customer_id"].astype(object)
    return frame.sort_values("customer_id", ignore_index=True)


def references(data: Path, as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(batch, streaming) features from the pure functions, no Spark and no Ray."""
    events = pq.read_table(data / "events", columns=EVENT_COLUMNS)
    fin = financial.financial_features(
        pq.read_table(data / "warehouse" / "financial_profiles", columns=PROFILE_COLUMNS)
    )
    batch = behaviour.customer_features(events, as_of)
    # What the online store holds at as_of: daily partials of the events seen by then.
    daily = behaviour.merge_partials(behaviour.contributions(events, until=as_of))
    streaming = behaviour.features_from_daily(daily, as_of)
    return with_defaults(fin, batch), with_defaults(fin, streaming)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert actual["customer_id"].tolist() == expected["customer_id"].tolist()
    for col in COUNT_FEATURES:
        np.testing.assert_array_equal(actual[col].to_numpy(), expected[col].to_numpy(), col)
    for col in CUSTOMER_FEATURES:
        np.testing.assert_allclose(
            actual[col].to_numpy(), expected[col].to_numpy(), rtol=1e-9, atol=0, err_msg=col
        )


@pytest.mark.parametrize("days_before_end", [0, 45])
def test_spark_equals_batch_and_streaming_paths(spark, data, days_before_end):
    as_of = observation_end(data) - timedelta(days=days_before_end, hours=7)
    actual = spark_features(spark, data / "events", data, as_of)
    batch, streaming = references(data, as_of)
    assert_same(actual, batch)
    assert_same(actual, streaming)
    assert len(actual) == 500 and actual["frequency_90d"].sum() > 0


def test_events_after_as_of_change_nothing(spark, data, tmp_path):
    as_of = observation_end(data) - timedelta(days=45, hours=7)
    customer = pq.read_table(data / "events", columns=["customer_id"])["customer_id"][0].as_py()
    # One purchase a second after as_of (same UTC day), one two days later.
    planted = pa.Table.from_pylist(
        [
            {
                "event_id": f"planted-{k}",
                "type": "purchase",
                "customer_id": customer,
                "event_time": as_of + after,
                "lines": [{"product_id": "p1", "quantity": 3, "unit_price": 99.0, "discount": 0.0}],
            }
            for k, after in enumerate((timedelta(seconds=1), timedelta(days=2)))
        ],
        schema=EVENT_SCHEMA,
    )
    events = tmp_path / "events"
    events.mkdir()
    for part in sorted((data / "events").glob("*.parquet")):
        (events / part.name).symlink_to(part)
    pq.write_table(planted, events / "part-planted.parquet")

    before = spark_features(spark, data / "events", data, as_of)
    assert_same(spark_features(spark, events, data, as_of), before)
    later = as_of + timedelta(days=3)
    grown = spark_features(spark, events, data, later).set_index("customer_id")
    base = spark_features(spark, data / "events", data, later).set_index("customer_id")
    assert grown.loc[customer, "frequency_30d"] == base.loc[customer, "frequency_30d"] + 2


def test_snapshot_holds_the_batch_graph_features(spark, data, tmp_path):
    as_of = observation_end(data) - timedelta(days=20, hours=7)
    profiles = str(data / "warehouse" / "financial_profiles")
    # Written as main() writes it, read back as serving reads a snapshot.
    path = snapshot_path(tmp_path, as_of)
    snapshot_frame(spark, str(data / "events"), profiles, as_of).write.parquet(str(path))
    snapshot = SnapshotStore.from_parquet(tmp_path)
    expected, _ = graph.graph_features(pq.read_table(data / "events"), until=as_of)
    assert len(snapshot) == 500 and 200 < len(expected) < 500
    columns = list(graph.CUSTOMER_COLUMNS)
    for row in expected.itertuples(index=False):
        got = snapshot.get(row.customer_id)
        np.testing.assert_array_equal([got[c] for c in columns], row[1:], row.customer_id)
    stored = pq.read_table(path).to_pandas()
    assert list(stored.columns) == ["customer_id", *CUSTOMER_FEATURES, *columns]
    without = stored[~stored["customer_id"].isin(expected["customer_id"])]
    assert len(without) == 500 - len(expected) and (without[columns] == 0.0).all().all()


def test_graph_reads_view_ids_from_offline_store_payloads(spark, data, tmp_path):
    records = next(iter(dataset_records(data, batch_rows=20_000)))
    events = [parse_event(value) for _, value in records]
    # Two weeks of them: one file per event date, and Spark lists each folder.
    as_of = observation_end(data)
    events = [e for e in events if as_of - timedelta(days=14) <= e.event_time <= as_of]
    store = OfflineStore(tmp_path)
    table = events_table(events, range(len(events)), "p0", datetime.now().astimezone())
    store.write_batch(table, "p0", 0, len(events) - 1)
    got = graph_frame(spark, str(store.events_dir), as_of)
    read = store.read(["event_id", "customer_id", "type", "event_time", "lines", "payload"])
    expected, _ = graph.graph_features(read, until=as_of)
    assert expected["coview_degree_mean"].gt(0).sum() > 10
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
