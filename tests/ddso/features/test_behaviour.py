from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ddso.features import behaviour

pytestmark = pytest.mark.unit

AS_OF = datetime(2025, 6, 30, tzinfo=UTC)
LINE = pa.struct(
    [
        ("product_id", pa.string()),
        ("quantity", pa.int64()),
        ("unit_price", pa.float64()),
        ("discount", pa.float64()),
    ]
)


def events(rows):
    """rows: (customer, type, days before AS_OF, purchase lines or None)."""
    return pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "type": [r[1] for r in rows],
            "event_time": pa.array(
                [AS_OF - timedelta(days=r[2]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "lines": pa.array([r[3] for r in rows], pa.list_(LINE)),
        }
    )


ROWS = [
    (
        "A",
        "purchase",
        5,
        [{"product_id": "P1", "quantity": 2, "unit_price": 10.0, "discount": 0.5}],
    ),
    (
        "A",
        "purchase",
        60,
        [{"product_id": "P2", "quantity": 1, "unit_price": 100.0, "discount": 0.0}],
    ),
    ("A", "view", 1, None),
    ("A", "view", 20, None),
    ("A", "cart_add", 3, None),
    ("A", "cart_add", 4, None),
    ("A", "crm_call", 2, None),
    (
        "A",
        "purchase",
        -3,
        [{"product_id": "P9", "quantity": 1, "unit_price": 999.0, "discount": 0.0}],
    ),  # future
    ("B", "session_start", 100, None),
    ("B", "complaint", 200, None),
]


def test_features_by_hand():
    f = behaviour.customer_features(events(ROWS), AS_OF).set_index("customer_id")
    a, b = f.loc["A"], f.loc["B"]
    assert a["recency_days"] == pytest.approx(5)
    assert (a["frequency_30d"], a["frequency_90d"], a["frequency_365d"]) == (1, 2, 2)
    assert a["monetary_30d"] == pytest.approx(10.0)  # 2 x 10 at 50% off
    assert a["monetary_365d"] == pytest.approx(110.0)
    assert a["avg_order_value_365d"] == pytest.approx(55.0)
    assert a["discount_share_365d"] == pytest.approx(10.0 / 120.0)
    assert (a["views_7d"], a["views_30d"], a["cart_adds_30d"]) == (1, 2, 2)
    assert a["cart_abandonment_30d"] == pytest.approx(0.5)
    assert a["contacts_7d"] == 1 and a["days_since_last_contact"] == pytest.approx(2)
    assert a["days_since_last_event"] == pytest.approx(1)  # the future purchase is invisible
    assert a["tenure_days"] == pytest.approx(60)
    assert b["recency_days"] == behaviour.NEVER_DAYS and b["frequency_365d"] == 0
    assert b["complaints_365d"] == 1 and b["sessions_90d"] == 0
    assert b["days_since_last_contact"] == behaviour.NEVER_DAYS
    assert list(f.columns) == list(behaviour.FEATURE_COLUMNS)


def test_batching_and_order_do_not_matter():
    rng = np.random.default_rng(0)
    kinds = ["view", "click", "purchase", "cart_add", "crm_email", "session_start", "offer_shown"]
    rows = []
    for _ in range(400):
        kind = kinds[rng.integers(len(kinds))]
        lines = (
            [
                {
                    "product_id": "P",
                    "quantity": int(rng.integers(1, 3)),
                    "unit_price": float(rng.uniform(1, 50)),
                    "discount": float(rng.choice([0.0, 0.2])),
                }
            ]
            if kind == "purchase"
            else None
        )
        rows.append((f"C{rng.integers(20)}", kind, float(rng.uniform(0, 400)), lines))
    whole = behaviour.customer_features(events(rows), AS_OF)
    perm = rng.permutation(len(rows))
    parts = [
        behaviour.event_window_rows(events([rows[j] for j in chunk]), AS_OF)
        for chunk in np.array_split(perm, 7)
    ]
    partials = pd.concat([behaviour.aggregate(p) for p in parts])  # partial aggregates merge again
    merged = behaviour.finalize(behaviour.aggregate(partials), AS_OF)
    pd.testing.assert_frame_equal(whole, merged, rtol=1e-12)


def test_stored_daily_partials_give_the_same_features_as_the_history():
    past = [r for r in ROWS if r[2] >= 0]
    partials = behaviour.contributions(events(past))
    # The stream merges micro-batches into daily partials in any grouping; the result is one.
    halves = [
        behaviour.merge_partials(partials.iloc[:4]),
        behaviour.merge_partials(partials.iloc[4:]),
    ]
    daily = behaviour.merge_partials(pd.concat(halves))
    assert list(daily.columns) == list(behaviour.PARTIAL_COLUMNS)
    online = behaviour.features_from_daily(daily, AS_OF)
    pd.testing.assert_frame_equal(online, behaviour.customer_features(events(past), AS_OF))


def test_windows_are_calendar_days_and_until_is_inclusive():
    late_today = AS_OF.replace(hour=23)
    rows = [("A", "view", -0.5, None), ("A", "view", 5.5, None), ("A", "view", 6.5, None)]
    f = behaviour.customer_features(events(rows), late_today).iloc[0]
    # June 30 12:00 (today, before 23:00) and June 24 count; June 23 is the 8th day back
    assert f["views_7d"] == 2
    at = behaviour.contributions(events([("A", "view", 0, None)]), until=AS_OF)
    assert len(at) == 1  # an event exactly at `until` counts


def test_temporal_profile_seasonality_and_open_complaint():
    # AS_OF is Monday 2025-06-30 00:00 UTC.
    rows = [
        ("A", "view", 2 - 9 / 24, None),  # Saturday 09:00: morning, weekend
        ("A", "click", 3 - 20 / 24, None),  # Friday 20:00: evening
        ("A", "view", 101 - 3 / 24, None),  # Friday 2025-03-21 03:00: night
        ("A", "crm_call", 1, None),  # the seller's action: not the customer's activity
        ("A", "complaint", 10, None),  # 00:00 Friday, within 30 days: open
    ]
    f = behaviour.customer_features(events(rows), AS_OF).iloc[0]
    assert f["share_morning_365d"] == pytest.approx(1 / 4)
    assert f["share_evening_365d"] == pytest.approx(1 / 4)
    assert f["share_night_365d"] == pytest.approx(2 / 4)  # 03:00 and the 00:00 complaint
    assert f["weekend_share_365d"] == pytest.approx(1 / 4)
    # 3 of 4 activities in the last 30 days vs a 30-day average of 4 * 30 / 365
    assert f["seasonality_index_30d"] == pytest.approx(3 / (4 * 30 / 365))
    assert f["open_complaint"] == 1.0
    later = behaviour.customer_features(events(rows), AS_OF + timedelta(days=30)).iloc[0]
    assert later["open_complaint"] == 0.0
