from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ddso.errors import UserError
from ddso.features import behaviour
from ddso.features.financial import profile_to_frame
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from ddso.features.training_sets import point_in_time
from ddso.schemas.events import parse_event_obj
from ddso.schemas.warehouse import FinancialProfile
from ddso.stores.offline import OfflineStore, events_table

pytestmark = pytest.mark.unit

T0 = datetime(2025, 5, 1, 12, tzinfo=UTC)
COLD = cold_start_features()
BODIES = {
    "view": {"session_id": "s", "product_id": "P1", "price": 10.0},
    "click": {"session_id": "s"},
    "cart_add": {"session_id": "s", "product_id": "P1", "quantity": 1, "unit_price": 10.0},
    "session_start": {"session_id": "s", "device": "mobile", "traffic_source": "organic"},
    "crm_call": {"interaction_id": "I", "outcome": "positive", "duration_s": 60},
    "complaint": {"complaint_id": "K", "category": "fees", "severity": 2},
    "offer_shown": {"offer_id": "O", "product_id": "P1", "channel": "email"},
}


def ev(i, kind, cid, at, amount=40.0, discount=0.25):
    body = BODIES.get(kind) or {
        "sale_id": f"S{i}",
        "channel": "web",
        "lines": [{"product_id": "P1", "quantity": 1, "unit_price": amount, "discount": discount}],
    }
    base = {"event_id": f"e{i}", "customer_id": cid, "event_time": at.isoformat(), "source": "web"}
    return parse_event_obj({**base, "type": kind, **body})


def store_with(tmp_path, events):
    store = OfflineStore(tmp_path / "offline")
    if events:
        table = events_table(events, range(len(events)), "test-0", T0)
        store.write_batch(table, "test-0", 0, len(events) - 1)
    return store


def spine_of(pairs, **extra):
    return pd.DataFrame(
        {
            "customer_id": [c for c, _ in pairs],
            "timestamp": pd.to_datetime([t for _, t in pairs], utc=True),
            **extra,
        }
    )


def test_planted_future_events_are_not_used(tmp_path):
    store = store_with(
        tmp_path,
        [
            ev(1, "purchase", "C1", T0 - timedelta(days=10), amount=40.0),
            ev(2, "view", "C1", T0),  # exactly at T: counts
            ev(3, "purchase", "C1", T0 + timedelta(seconds=1), amount=1e6),
            ev(4, "purchase", "C1", T0 + timedelta(days=2), amount=5e5),
            ev(5, "crm_call", "C1", T0 + timedelta(days=3)),
        ],
    )
    t1 = T0 + timedelta(seconds=1)
    out = point_in_time(spine_of([("C1", T0), ("C1", t1)]), store)
    at_t, after = out.iloc[0], out.iloc[1]
    assert at_t["frequency_30d"] == 1 and at_t["monetary_30d"] == pytest.approx(30.0)
    assert at_t["views_7d"] == 1 and at_t["days_since_last_event"] == pytest.approx(0, abs=1e-9)
    assert (
        at_t["contacts_30d"] == 0
        and at_t["days_since_last_contact"] == COLD["days_since_last_contact"]
    )
    # One second later the planted purchase is history: it is the row's T that cuts.
    assert after["frequency_30d"] == 2 and after["monetary_30d"] == pytest.approx(30.0 + 750_000)


def history(n_customers=6, n_events=400, seed=0):
    """A mixed history over ~120 days, with bursts inside one second and events on T."""
    rng = np.random.default_rng(seed)
    start = T0 - timedelta(days=120)
    kinds = ["purchase", *BODIES]
    events = []
    for i in range(n_events):
        cid = f"C{rng.integers(n_customers)}"
        at = start + timedelta(seconds=int(rng.integers(0, 125 * 86_400)))
        kind = kinds[rng.integers(len(kinds))]
        events.append(ev(i, kind, cid, at, amount=float(rng.integers(1, 500))))
    # Same-second ties and events exactly on the mid-day T below.
    events += [ev(10_000 + k, "purchase", "C1", T0, amount=7.0 + k) for k in range(3)]
    events += [ev(10_010, "view", "C2", T0 - timedelta(days=1, microseconds=1))]
    return events


def test_equals_customer_features_at_every_t(tmp_path):
    store = store_with(tmp_path, history())
    times = [
        T0,  # mid-day, with events exactly on it
        T0 - timedelta(days=1, microseconds=1),
        T0 - timedelta(days=30, hours=5, minutes=7),
        datetime(2025, 4, 1, tzinfo=UTC),  # midnight: the day's events start here
        T0 + timedelta(days=3, seconds=1),
        T0 - timedelta(days=200),  # before any event: all cold
    ]
    customers = [f"C{k}" for k in range(7)]  # C6 never appears in the history
    pairs = [(c, t) for t in times for c in customers]
    order = np.random.default_rng(1).permutation(len(pairs))
    pairs = [pairs[k] for k in order]
    out = point_in_time(spine_of(pairs), store, features=behaviour.FEATURE_COLUMNS)
    events = store.read()
    checked = 0
    for t in times:
        expected = behaviour.customer_features(events, t).set_index("customer_id")
        rows = out[out["timestamp"] == pd.Timestamp(t)]
        for _, row in rows.iterrows():
            want = (
                expected.loc[row["customer_id"]]
                if row["customer_id"] in expected.index
                else pd.Series({n: COLD[n] for n in behaviour.FEATURE_COLUMNS})
            )
            for name in behaviour.FEATURE_COLUMNS:
                assert row[name] == pytest.approx(want[name], rel=1e-9, abs=1e-9), (t, name)
            checked += 1
        assert len(rows) == len(customers)
    assert checked == len(pairs)
    assert out.loc[out["timestamp"] == pd.Timestamp(T0), "frequency_30d"].max() > 0


def profile(as_of, income):
    fp = FinancialProfile(
        customer_id="C1",
        as_of=as_of,
        income_streams=[
            {"kind": "salary", "monthly_amount": income, "months_observed": 24, "stability": 0.9}
        ],
        debts=[{"kind": "auto_loan", "balance": 9000, "monthly_payment": 400}],
        savings_balance=1000,
        payments_due_12m=12,
        payments_on_time_12m=12,
        delinquencies_24m=0,
    )
    return profile_to_frame(fp).append_column(
        "as_of", pa.array([as_of], pa.timestamp("us", tz="UTC"))
    )


def test_profiles_are_joined_as_of_each_row(tmp_path):
    jan, mar = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)
    profiles = pa.concat_tables([profile(mar, 5000.0), profile(jan, 2000.0)])
    store = store_with(tmp_path, [])
    spine = spine_of(
        [
            ("C1", datetime(2024, 12, 31, tzinfo=UTC)),  # before any profile
            ("C1", datetime(2025, 2, 1, tzinfo=UTC)),
            ("C1", mar),  # as_of == T: that profile applies
            ("C1", mar - timedelta(microseconds=1)),
            ("C2", mar),  # no profile at all
        ]
    )
    out = point_in_time(spine, store, profiles=profiles)
    for name in behaviour.FEATURE_COLUMNS:  # an empty event store: behaviour is cold
        assert out[name].tolist() == [COLD[name]] * 5
    assert out["monthly_income"].tolist() == [0.0, 2000.0, 5000.0, 2000.0, 0.0]
    assert out["debt_to_income"].tolist() == pytest.approx([0.0, 0.2, 0.08, 0.2, 0.0])
    assert out["on_time_ratio_12m"].tolist() == [1.0] * 5
    as_frame = point_in_time(
        spine, store, features=["monthly_income"], profiles=profiles.to_pandas()
    )
    assert as_frame["monthly_income"].tolist() == out["monthly_income"].tolist()


def test_cold_start_pass_through_and_order(tmp_path):
    store = store_with(tmp_path, [ev(1, "purchase", "C1", T0 - timedelta(days=1))])
    spine = spine_of(
        [("C9", T0), ("C1", T0), ("C1", T0 - timedelta(days=2)), ("C1", T0)],
        label=[1, 0, 1, 0],
    ).set_index(pd.Index([40, 10, 30, 20]))
    out = point_in_time(spine, store, features=["frequency_30d", "recency_days", "total_debt"])
    assert list(out.columns) == ["customer_id", "timestamp", "label", "frequency_30d",
                                 "recency_days", "total_debt"]  # fmt: skip
    assert out.index.tolist() == [40, 10, 30, 20] and out["label"].tolist() == [1, 0, 1, 0]
    assert out["frequency_30d"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert out["recency_days"].tolist() == [COLD["recency_days"], 1.0, COLD["recency_days"], 1.0]
    assert out["total_debt"].tolist() == [0.0] * 4  # no profiles given: cold start
    full = point_in_time(spine.iloc[:0], store)
    assert full.empty and list(full.columns)[3:] == list(CUSTOMER_FEATURES)


@pytest.mark.parametrize(
    ("spine", "features", "message"),
    [
        (pd.DataFrame({"customer_id": ["C1"]}), None, "missing column(s) ['timestamp']"),
        (
            pd.DataFrame({"customer_id": ["C1"], "timestamp": pd.to_datetime(["2025-01-01"])}),
            None,
            "'timestamp' must be timezone-aware",
        ),
        (
            pd.DataFrame({"customer_id": ["C1", "C2"], "timestamp": [T0, pd.NaT]}),
            None,
            "'timestamp' has NaT at row position(s) [1]",
        ),
        (
            pd.DataFrame({"customer_id": [None], "timestamp": [T0]}),
            None,
            "'customer_id' has nulls",
        ),
        (spine_of([("C1", T0)]), ["views_7d", "shoe_size"], "unknown feature(s) ['shoe_size']"),
        (spine_of([("C1", T0)], views_7d=[1]), None, "clash with feature names"),
    ],
)
def test_bad_spines_are_user_errors(tmp_path, spine, features, message):
    with pytest.raises(UserError) as err:
        point_in_time(spine, store_with(tmp_path, []), features=features)
    assert message in str(err.value)
