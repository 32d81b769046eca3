"""One conformance suite for every online store: the in-process one and Redis (real server).

Each scenario is run against both; the rules are those of ddso.stores.state.
"""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from ddso.features import behaviour
from ddso.schemas.events import parse_event_obj
from ddso.stores.online import InMemoryOnlineStore
from ddso.stores.redis_online import RedisOnlineStore
from ddso.stores.state import updates_from_events

T0 = datetime(2025, 5, 1, 12, tzinfo=UTC)
DAY = 86_400.0
LATENESS = 3 * DAY


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request):
    if request.param == "memory":
        return InMemoryOnlineStore()
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("redis_prefix")
    return RedisOnlineStore(client, prefix=prefix, ttl_s=3600)


def ev(i, kind="view", cid="C1", at=T0, **extra):
    base = {"event_id": f"e{i}", "customer_id": cid, "event_time": at.isoformat(), "source": "web"}
    body = {
        "view": {"session_id": "s", "product_id": "P1", "price": 10.0},
        "purchase": {
            "sale_id": f"S{i}",
            "channel": "web",
            "lines": [{"product_id": "P1", "quantity": 1, "unit_price": 40.0, "discount": 0.25}],
        },
        "crm_call": {"interaction_id": f"I{i}", "outcome": "positive", "duration_s": 60},
        "enrollment": {"enrollment_id": "N1", "product_id": "P9", "monthly_payment": 50.0},
        "graduation": {"enrollment_id": "N1"},
    }[kind]
    return parse_event_obj({**base, "type": kind, **body, **extra})


def history():
    return [
        ev(1, "view", at=T0 - timedelta(days=40)),
        ev(2, "purchase", at=T0 - timedelta(days=10)),
        ev(3, "crm_call", at=T0 - timedelta(days=2)),
        ev(4, "view", at=T0 - timedelta(hours=3)),
        ev(5, "purchase", cid="C2", at=T0 - timedelta(days=1)),
        ev(6, "enrollment", cid="C2", at=T0),
    ]


def features(store, cid, as_of=T0 + timedelta(hours=1)):
    return store.state(cid).features(cid, as_of)


def test_state_gives_the_batch_features(store):
    events = history()
    r = store.apply(updates_from_events(events), LATENESS)
    assert (r.applied, r.duplicates, r.late) == (6, 0, [])
    as_of = T0 + timedelta(hours=1)
    frame = pd.DataFrame(
        {
            "customer_id": [e.customer_id for e in events],
            "type": [e.type for e in events],
            "event_time": pd.to_datetime([e.event_time for e in events], utc=True),
            "lines": [
                [ln.model_dump() for ln in e.lines] if e.type == "purchase" else None
                for e in events
            ],
        }
    )
    batch = behaviour.customer_features(frame, as_of).set_index("customer_id")
    for cid in ("C1", "C2"):
        online = features(store, cid, as_of)
        for name in behaviour.FEATURE_COLUMNS:
            assert online[name] == pytest.approx(batch.loc[cid, name], rel=1e-9), name
    assert features(store, "C2")["funnel_stage"] == "enrolled"
    assert features(store, "C1")["last_crm_outcome"] == "positive"
    assert store.state("nobody") is None


def test_redelivery_and_replay_change_nothing(store):
    ups = updates_from_events(history())
    store.apply(ups[:4], LATENESS)
    before = features(store, "C1")
    again = store.apply(ups, LATENESS)  # a crashed batch redelivered, plus the rest
    # e3, e4 are within the bound of C1's watermark: skipped as duplicates; e1, e2 are older
    # than the bound: routed as late, never applied twice.
    assert (again.applied, again.duplicates, again.late) == (2, 2, ["e1", "e2"])
    whole = features(store, "C1")
    assert whole == before
    replay = store.apply(ups, LATENESS)
    assert replay.applied == 0 and features(store, "C1") == whole


def test_late_events_beyond_the_bound_are_routed_not_applied(store):
    store.apply(updates_from_events([ev(1, "view", at=T0)]), LATENESS)
    r = store.apply(
        updates_from_events(
            [
                ev(2, "view", at=T0 - timedelta(days=2)),  # late but within the bound: applied
                ev(3, "view", at=T0 - timedelta(days=5)),  # beyond the bound: routed
            ]
        ),
        LATENESS,
    )
    assert r.applied == 1 and r.late == ["e3"]
    assert features(store, "C1")["views_7d"] == 2


def test_late_events_never_overwrite_newer_last_values(store):
    store.apply(updates_from_events([ev(1, "graduation", at=T0)]), LATENESS)
    store.apply(updates_from_events([ev(2, "enrollment", at=T0 - timedelta(days=1))]), LATENESS)
    assert features(store, "C1")["funnel_stage"] == "graduated"
    # The same second: the order is (time, event id), so "e9" beats "e10" whatever arrives first.
    store.apply(updates_from_events([ev(9, "enrollment", at=T0 + timedelta(seconds=5))]), LATENESS)
    store.apply(updates_from_events([ev(10, "graduation", at=T0 + timedelta(seconds=5))]), LATENESS)
    assert features(store, "C1")["funnel_stage"] == "enrolled"


def test_old_ids_are_forgotten_only_beyond_the_bound(store):
    store.apply(updates_from_events([ev(1, "view", at=T0 - timedelta(days=10))]), LATENESS)
    store.apply(updates_from_events([ev(2, "view", at=T0)]), LATENESS)
    # e1 is now beyond the bound: a redelivery is routed as late, never counted twice.
    r = store.apply(updates_from_events([ev(1, "view", at=T0 - timedelta(days=10))]), LATENESS)
    assert r.applied == 0 and r.late == ["e1"]
    assert features(store, "C1")["views_30d"] == 2


@pytest.mark.integration
def test_redis_keys_carry_version_and_ttl(redis_client, redis_prefix):
    store = RedisOnlineStore(redis_client, prefix=redis_prefix, ttl_s=120)
    store.apply(updates_from_events([ev(1)]), LATENESS)
    key = f"{redis_prefix}state:v{behaviour_version()}:C1"
    assert 0 < redis_client.ttl(key) <= 120
    assert 0 < redis_client.ttl(f"{redis_prefix}seen:v{behaviour_version()}:C1") <= 120
    store.put_features(pd.DataFrame({"customer_id": ["C1"], "coview_overlap": [1.0]}))
    assert 0 < redis_client.ttl(f"{redis_prefix}feat:v{behaviour_version()}:C1") <= 120


def behaviour_version():
    from ddso.features.sets import FEATURE_SET_VERSION

    return FEATURE_SET_VERSION


def test_computed_features_are_written_whole_and_read_by_name(store):
    rows = pd.DataFrame(
        {"customer_id": ["C1", "C2"], "coview_overlap": [0.25, 0.0], "coview_walk_3": [1 / 3, 2.0]}
    )
    assert store.put_features(rows) == 2
    assert store.get_features("C1") == {"coview_overlap": 0.25, "coview_walk_3": 1 / 3}
    assert store.get_features("nobody") is None
    # A later write replaces the values it names, keeps the others, and is idempotent.
    again = pd.DataFrame({"customer_id": ["C2"], "coview_walk_3": [0.5]})
    assert store.put_features(again) == store.put_features(again) == 1
    assert store.get_features("C2") == {"coview_overlap": 0.0, "coview_walk_3": 0.5}
    # Computed values are not event state: the customer has none until an event arrives.
    assert store.state("C1") is None
