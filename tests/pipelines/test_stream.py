"""The stream job on the embedded default: local log -> in-process online store + offline store."""

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis

from ddso.config import load_settings
from ddso.errors import ConfigError
from ddso.features import behaviour, graph
from ddso.io.eventlog import LocalEventLog
from ddso.io.publish import dataset_records, publish
from ddso.schemas.events import parse_event
from ddso.stores.deadletter import DeadLetterSink
from ddso.stores.offline import OfflineStore, events_table
from ddso.stores.online import InMemoryOnlineStore
from ddso.stores.redis_online import RedisOnlineStore
from ddso.stream import GRAPH_EVENT_COLUMNS, GraphRefresh
from pipelines.featurize import EVENT_COLUMNS
from pipelines.stream import Args, make_online_store, make_processor, run_consumer

pytestmark = pytest.mark.integration

POISON = [
    b"{not json",
    b'{"type": "view", "event_id": "x1", "customer_id": "c1", "source": "web"}',
    b'{"type": "teleport", "event_id": "x2", "customer_id": "c1", '
    b'"event_time": "2025-01-02T00:00:00Z", "source": "web"}',
    json.dumps(
        {
            "type": "view",
            "event_id": "x3",
            "customer_id": "c1",
            "event_time": "2025-01-02T00:00:00Z",
            "source": "web",
            "session_id": "s",
            "product_id": "p",
            "price": 1,
        }
    )
    .encode()
    .replace(b"1}", b"NaN}"),
    b"x" * 70_000,
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from ddso.data.generator import GeneratorConfig, generate

    out = tmp_path_factory.mktemp("stream-data") / "data"
    generate(GeneratorConfig(customers=300, days=60, seed=21), out, progress=False)
    return out


def batch_features(dataset, customer_ids, as_of):
    events = pq.read_table(dataset / "events", columns=EVENT_COLUMNS)
    f = behaviour.customer_features(events, as_of).set_index("customer_id")
    return f.loc[customer_ids]


def test_stream_matches_batch_and_dead_letters_once(dataset, tmp_path):
    settings = load_settings(home=tmp_path)
    records = [r for batch in dataset_records(dataset, batch_rows=500) for r in batch]
    # Poison records at a few places among the real ones.
    for i, bad in enumerate(POISON):
        records.insert(37 + 400 * i, (b"c1", bad))
    n = publish(settings, [records[i : i + 700] for i in range(0, len(records), 700)], partitions=3)
    assert n == len(records)
    online = InMemoryOnlineStore()
    args = Args(max_batch=400, poll_s=0.05, idle_exit_s=0.3)
    totals = run_consumer(settings, args, online=online)
    assert totals["received"] == n and totals["dead_letters"] == len(POISON)
    assert totals["applied"] == n - len(POISON) and totals["late"] == 0

    # Online state is "as of now": read it at the newest event (journeys run past the window).
    as_of = pc.max(pq.read_table(dataset / "events", columns=["event_time"])["event_time"]).as_py()
    customers = online.customers()
    expected = batch_features(dataset, customers, as_of)
    for cid in customers[:60]:
        got = online.state(cid).features(cid, as_of)
        for name in behaviour.FEATURE_COLUMNS:
            assert got[name] == pytest.approx(expected.loc[cid, name], rel=1e-9, abs=1e-9), (
                cid,
                name,
            )

    dead = DeadLetterSink(settings.offline_store_path()).read().to_pandas()
    assert len(dead) == len(POISON)
    assert set(dead["reason"]) == {"bad_json", "schema", "unknown_type", "non_finite", "oversize"}
    assert "c1" not in "".join(dead["payload_redacted"])  # values never kept
    offline = OfflineStore(settings.offline_store_path()).read(
        columns=["event_id", "ingestion_time"]
    )
    assert offline.num_rows == n - len(POISON)

    # Replay the whole log from offset 0 into the same store: nothing changes.
    LocalEventLog(settings.event_log_path()).commit(settings.kafka.group_id, {0: 0, 1: 0, 2: 0})
    before = {c: online.state(c).features(c, as_of) for c in customers}
    again = run_consumer(settings, args, online=online)
    assert again["received"] == n and again["applied"] == 0
    assert {c: online.state(c).features(c, as_of) for c in customers} == before
    assert len(DeadLetterSink(settings.offline_store_path()).read()) == len(POISON)
    assert OfflineStore(settings.offline_store_path()).read(
        columns=["event_id"]
    ).num_rows == n - len(POISON)


@pytest.mark.ray
def test_two_consumers_as_ray_tasks_split_the_partitions(
    ray_session, dataset, tmp_path, monkeypatch
):
    from pipelines.stream import main

    monkeypatch.setenv("DDSO_HOME", str(tmp_path))
    settings = load_settings()
    n = publish(settings, dataset_records(dataset, batch_rows=1000), partitions=4)
    results = main(Args(consumers=2, max_batch=500, poll_s=0.05, idle_exit_s=1.0))
    assert len(results) == 2
    assert all(r["received"] > 0 for r in results)  # each owns partitions of its own
    assert sum(r["received"] for r in results) == n
    assert sum(r["applied"] for r in results) == n
    committed = LocalEventLog(settings.event_log_path()).committed(settings.kafka.group_id)
    log = LocalEventLog(settings.event_log_path(), readonly=True)
    assert committed == {p: log.end_offset(p) for p in range(4)}


def assert_graph_rows(store, expected):
    """The store holds ``expected``'s graph rows (up to the walk's BLAS rounding)."""
    for row in expected.itertuples(index=False):
        got = store.get_features(row.customer_id)
        assert got is not None, row.customer_id
        np.testing.assert_allclose(
            [got[c] for c in graph.CUSTOMER_COLUMNS], row[1:], rtol=1e-12, err_msg=row.customer_id
        )


def test_graph_refresh_writes_batch_features_to_redis_across_a_restart(
    dataset, tmp_path, redis_settings, redis_client
):
    settings = load_settings(
        home=tmp_path,
        redis={"url": redis_settings.url, "key_prefix": redis_settings.key_prefix},
        stream={"graph_refresh_s": 3600},  # no timed refresh: the one at start and at stop
    )
    records = [r for batch in dataset_records(dataset, batch_rows=5000) for r in batch]
    times = [json.loads(value)["event_time"] for _, value in records]
    cut = sorted(times)[len(times) // 2]
    args = Args(max_batch=2000, poll_s=0.05, idle_exit_s=0.3)
    offline = OfflineStore(settings.offline_store_path())

    publish(settings, [[r for r, t in zip(records, times, strict=True) if t <= cut]])
    run_consumer(settings, args)
    store = make_online_store(settings)
    assert isinstance(store, RedisOnlineStore)
    before, _ = graph.graph_features(offline.read(GRAPH_EVENT_COLUMNS))
    assert len(before) > 100
    assert_graph_rows(store, before)

    # A restart rebuilds the graph from the offline store and rewrites every customer at
    # once; the customers with purchases or views after that are rewritten at stop.
    later = [r for r, t in zip(records, times, strict=True) if t > cut]
    publish(settings, [later])
    run_consumer(settings, args)
    after, _ = graph.graph_features(offline.read(GRAPH_EVENT_COLUMNS))
    later_table = events_table(
        [parse_event(v) for _, v in later], range(len(later)), "x", datetime.now(UTC)
    )
    touched = set(graph.interactions(later_table)["customer_id"])
    assert 50 < len(touched) < len(after)
    assert_graph_rows(store, after[after["customer_id"].isin(touched)])
    # The known limit: the others keep the values of the graph as it was at the restart.
    assert_graph_rows(store, before[~before["customer_id"].isin(touched)])


def test_graph_refresh_waits_its_interval_and_keeps_failed_customers_pending(dataset):
    events = pq.read_table(dataset / "events")
    cut = pc.approximate_median(pc.cast(events["event_time"], "int64")).as_py()
    at = pc.cast(events["event_time"], "int64")
    first = events.filter(pc.less_equal(at, cut))
    now = [0.0]
    store = InMemoryOnlineStore()
    refresh = GraphRefresh(store, 60.0, clock=lambda: now[0])
    refresh.update(first)
    expected, _ = graph.graph_features(first)
    assert refresh.maybe_refresh() == 0 and store.get_features(expected["customer_id"][0]) is None
    now[0] = 60.0
    assert refresh.maybe_refresh() == len(expected) and not refresh.pending
    assert_graph_rows(store, expected)

    later = events.filter(pc.greater(at, cut))
    customer = graph.interactions(later)["customer_id"].iloc[0]
    own = later.filter(pc.equal(later["customer_id"], customer))
    refresh.update(own)
    now[0] = 100.0
    assert refresh.maybe_refresh() == 0 and refresh.pending == {customer}
    now[0] = 120.0
    assert refresh.maybe_refresh() == 1
    grown, _ = graph.graph_features(pa.concat_tables([first, own]))
    assert_graph_rows(store, grown[grown["customer_id"] == customer])
    # Untouched customers keep their values, though the new baskets moved the graph.
    others = expected[expected["customer_id"] != customer]
    assert_graph_rows(store, others)
    moved = grown.set_index("customer_id").loc[others["customer_id"]].to_numpy()
    assert (moved != others.set_index("customer_id").to_numpy()).any()

    # Nothing listens on port 1: the write fails, the customer stays pending for next time.
    down = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2)
    failing = GraphRefresh(RedisOnlineStore(down), 0.0, clock=lambda: now[0])
    failing.update(own)
    assert failing.maybe_refresh() == 0 and failing.pending == {customer}


def test_graph_refresh_setting(tmp_path):
    off = load_settings(home=tmp_path, stream={"graph_refresh_s": 0})
    assert make_processor(off, Args(), InMemoryOnlineStore()).graph is None
    assert load_settings(home=tmp_path).stream.graph_refresh_s == 60.0
    with pytest.raises(ConfigError, match=r"stream\.graph_refresh_s"):
        load_settings(home=tmp_path, stream={"graph_refresh_s": -1})
