from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from ddso.data.generator import GeneratorConfig, generate
from ddso.features.enrichment import (
    FEATURE_COLUMNS,
    MARKET_COLUMNS,
    WEB_COLUMNS,
    enrichment_features,
    market_features,
    web_session_features,
)

pytestmark = pytest.mark.unit

AS_OF = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # a Monday


def market_row(city, week, level):
    return dict(
        city_id=city,
        week_start=week,
        consumer_confidence=level,
        unemployment_rate=level / 1000,
        avg_interest_rate=level / 2000,
        retail_index=level * 2,
    )


CITIES = pd.DataFrame(
    {"city_id": ["A", "B", "C"], "population": [99, 9_999, 0], "urban": [True, False, True]}
)
MARKET = pd.DataFrame(
    [
        market_row("A", date(2025, 2, 24), 80.0),
        market_row("A", date(2025, 3, 3), 90.0),
        market_row("A", date(2025, 3, 17), 500.0),  # after as_of: never read
        market_row("B", date(2025, 3, 10), 110.0),  # starts on as_of's day: counts
        market_row("C", date(2025, 3, 10), 130.0),
        market_row("C", date(2025, 3, 3), 120.0),  # older: unsorted input on purpose
    ]
)
CUSTOMERS = pd.DataFrame(
    {"customer_id": ["u1", "u2", "u3", "u4"], "city_id": ["A", "B", "C", "nowhere"]}
)


def test_market_as_of_join_picks_latest_week_not_after_as_of():
    out = market_features(CUSTOMERS, CITIES, MARKET, AS_OF).set_index("customer_id")
    assert list(out.columns) == list(MARKET_COLUMNS)
    assert out.loc["u1", "market_consumer_confidence"] == 90.0
    assert out.loc["u1", "market_retail_index"] == 180.0
    assert out.loc["u2", "market_consumer_confidence"] == 110.0
    assert out.loc["u3", "market_unemployment_rate"] == pytest.approx(0.13)
    assert out.loc["u1", "city_urban"] == 1.0 and out.loc["u2", "city_urban"] == 0.0
    assert out.loc["u1", "city_log_population"] == pytest.approx(np.log(100))
    assert (out.dtypes == "float64").all()


def test_market_unknown_city_gets_median_of_newest_week_and_median_city():
    out = market_features(CUSTOMERS, CITIES, MARKET, AS_OF).set_index("customer_id")
    # the newest week on or before as_of is 2025-03-10: cities B (110) and C (130)
    assert out.loc["u4", "market_consumer_confidence"] == 120.0
    assert out.loc["u4", "market_interest_rate"] == pytest.approx(120.0 / 2000)
    assert out.loc["u4", "city_urban"] == 0.0
    assert out.loc["u4", "city_log_population"] == pytest.approx(np.log(100))


def test_market_city_without_a_week_yet_gets_defaults_and_no_data_gives_zero():
    early = datetime(2025, 3, 2, 23, 59, tzinfo=UTC)
    out = market_features(CUSTOMERS, CITIES, MARKET, early).set_index("customer_id")
    assert out.loc["u1", "market_consumer_confidence"] == 80.0
    assert out.loc["u2", "market_consumer_confidence"] == 80.0  # B's first week is later
    empty = market_features(CUSTOMERS, CITIES.iloc[:0], MARKET.iloc[:0], AS_OF)
    assert (empty[list(MARKET_COLUMNS)] == 0.0).all().all()


def session(
    customer, started, duration=60.0, device="desktop", source="organic", pages=2, engaged=False
):
    return dict(
        customer_id=customer,
        started_at=pd.Timestamp(started, tz="UTC"),
        duration_s=duration,
        device=device,
        traffic_source=source,
        page_views=pages,
        engaged=engaged,
    )


def test_web_sessions_window_edges_and_values():
    sessions = pd.DataFrame(
        [
            session("u1", "2025-03-10 11:59", 100.0, "mobile", "paid", 4, True),
            session("u1", "2025-02-11 00:00", 200.0, "desktop", "organic", 2, False),  # 28th day
            session("u1", "2025-02-10 23:59", 999.0, "mobile", "paid", 9, True),  # 29th: out
            session("u1", "2025-03-10 12:00:01", 999.0, "mobile", "paid", 9, True),  # after as_of
            session("u2", "2025-01-05 10:00"),  # only before the window: zeros
            session("u3", "2025-03-10 18:00"),  # only after as_of: left out
        ]
    )
    out = web_session_features(sessions, AS_OF).set_index("customer_id")
    assert list(out.columns) == list(WEB_COLUMNS)
    assert sorted(out.index) == ["u1", "u2"]
    u1 = out.loc["u1"]
    assert u1["web_sessions_28d"] == 2.0
    assert u1["web_avg_session_s_28d"] == 150.0
    assert u1["web_pages_per_session_28d"] == 3.0
    assert u1["web_engaged_share_28d"] == 0.5
    assert u1["web_mobile_share_28d"] == 0.5
    assert u1["web_paid_share_28d"] == 0.5
    assert (out.loc["u2"] == 0.0).all()
    assert (out.dtypes == "float64").all()


def test_enrichment_features_on_a_generated_dataset(tmp_path):
    generate(GeneratorConfig(customers=200, days=40, seed=1), tmp_path / "d", progress=False)
    out = enrichment_features(tmp_path / "d" / "warehouse", datetime(2025, 2, 9, tzinfo=UTC))
    assert out.shape == (200, 1 + len(FEATURE_COLUMNS))
    assert list(out.columns) == ["customer_id", *FEATURE_COLUMNS]
    assert out["customer_id"].is_unique
    assert not out[list(FEATURE_COLUMNS)].isna().any().any()
    assert (out[list(FEATURE_COLUMNS)].dtypes == "float64").all()
    assert out["market_consumer_confidence"].between(0, 200).all()
    assert out["market_unemployment_rate"].between(0, 1).all()
    assert out["market_interest_rate"].between(0, 1).all()
    assert (out["market_retail_index"] > 0).all()
    assert out["city_urban"].isin([0.0, 1.0]).all()
    assert out["city_log_population"].between(np.log(1_000), np.log(50_000_000)).all()
    assert (out["web_sessions_28d"] >= 0).all() and (out["web_sessions_28d"] > 0).any()
    assert out["web_avg_session_s_28d"].between(0, 86_400).all()
    shares = ["web_engaged_share_28d", "web_mobile_share_28d", "web_paid_share_28d"]
    assert out[shares].apply(lambda c: c.between(0, 1)).all().all()
