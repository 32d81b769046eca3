"""The stream job on the embedded default: local log -> in-process online store + offline store."""

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ddso.config import load_settings
from ddso.features import behaviour
from ddso.io.eventlog import LocalEventLog
from ddso.io.publish import dataset_records, publish
from ddso.stores.deadletter import DeadLetterSink
from ddso.stores.offline import OfflineStore
from ddso.stores.online import InMemoryOnlineStore
from pipelines.featurize import EVENT_COLUMNS
from pipelines.stream import Args, run_consumer

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
