"""The serving lookup: snapshot rows overlaid with live behaviour, degraded when Redis fails."""

from datetime import timedelta

import pytest
import redis

from ddso.stores.online import InMemoryOnlineStore, LiveFeatures, SnapshotStore
from ddso.stores.redis_online import RedisOnlineStore
from ddso.stores.state import updates_from_events
from tests.ddso.stores.test_online_conformance import LATENESS, T0, ev

SNAPSHOT = SnapshotStore([
    {"customer_id": "C1", "frequency_30d": 0.0, "monthly_income": 2500.0, "consent_email": True},
    {"customer_id": "C3", "frequency_30d": 4.0, "monthly_income": 900.0, "consent_email": False},
])
NOW = (T0 + timedelta(hours=1)).timestamp()


def live(store):
    store.apply(updates_from_events([ev(1, "purchase", at=T0 - timedelta(days=3)),
                                     ev(2, "purchase", cid="C9", at=T0)]), LATENESS)
    return LiveFeatures(SNAPSHOT, store, clock=lambda: NOW)


@pytest.mark.unit
def test_live_behaviour_overrides_the_snapshot_and_slow_facts_stay():
    lookup = live(InMemoryOnlineStore())
    row, degraded = lookup.get("C1")
    assert not degraded and row["frequency_30d"] == 1.0  # the purchase the stream applied
    assert row["monthly_income"] == 2500.0 and row["consent_email"] is True
    assert lookup.get("C3") == (SNAPSHOT.get("C3"), False)  # never seen live: snapshot values
    assert lookup.get("C9") == (None, False)  # live only, no profile: unknown
    assert LiveFeatures(SNAPSHOT).get("C1") == (SNAPSHOT.get("C1"), False)  # embedded default


@pytest.mark.integration
def test_against_real_redis_and_degraded_when_it_is_down(redis_client, redis_prefix):
    lookup = live(RedisOnlineStore(redis_client, prefix=redis_prefix, ttl_s=3600))
    row, degraded = lookup.get("C1")
    assert not degraded and row["frequency_30d"] == 1.0
    # Nothing listens on port 1: every read fails fast; the snapshot is served, flagged.
    down = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2)
    lookup = LiveFeatures(SNAPSHOT, RedisOnlineStore(down, prefix=redis_prefix))
    assert lookup.get("C1") == (SNAPSHOT.get("C1"), True)
