import json
from datetime import UTC, datetime, timedelta

import pytest

from ddso.features import behaviour
from ddso.schemas.events import parse_event_obj
from ddso.stores.offline import OfflineStore, events_table

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 23, 30, tzinfo=UTC)


def purchase(i: int, minutes: int):
    return parse_event_obj(
        {
            "type": "purchase",
            "event_id": f"e{i}",
            "customer_id": f"C{i % 3}",
            "source": "web",
            "event_time": (T0 + timedelta(minutes=minutes)).isoformat(),
            "sale_id": f"S{i}",
            "channel": "web",
            "lines": [{"product_id": "P1", "quantity": 2, "unit_price": 5.0}],
        }
    )


def test_write_is_partitioned_idempotent_and_readable_by_feature_functions(tmp_path):
    store = OfflineStore(tmp_path)
    events = [purchase(i, 20 * i) for i in range(6)]  # crosses midnight
    now = datetime(2025, 3, 2, 12, tzinfo=UTC)
    table = events_table(
        events, offsets=range(100, 106), source="ddso.events-0", ingestion_time=now
    )
    assert store.write_batch(table, "ddso.events-0", 100, 105) == 6
    assert store.write_batch(table, "ddso.events-0", 100, 105) == 6  # replay overwrites
    dates = sorted(p.name for p in (tmp_path / "events").iterdir())
    assert dates == ["event_date=2025-03-01", "event_date=2025-03-02"]
    everything = store.read()
    assert everything.num_rows == 6 and everything["ingestion_time"][0].as_py() == now
    assert parse_event_obj(json.loads(everything["payload"][0].as_py())) in events
    early = store.read(columns=["event_id"], until=T0 + timedelta(minutes=20))
    assert sorted(early["event_id"].to_pylist()) == ["e0", "e1"]
    feats = behaviour.customer_features(store.read(), now)
    assert feats["monetary_30d"].sum() == pytest.approx(60.0)


def test_duplicates_across_files_are_read_once(tmp_path):
    store = OfflineStore(tmp_path)
    t = events_table([purchase(1, 0)], [7], "s", T0)
    store.write_batch(t, "s", 7, 7)
    store.write_batch(t, "s", 7, 8)  # same event in an overlapping range
    assert store.read().num_rows == 1
    assert OfflineStore(tmp_path / "empty").read(columns=["event_id"]).num_rows == 0
