"""The dashboard's numbers: incremental funnel counts over the offline store, histogram
quantiles, the cached board."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Histogram

from ddso.config import load_settings
from ddso.kpis import FunnelCounts, KpiBoard, histogram_quantile, latency_by_endpoint
from ddso.schemas.events import parse_event_obj
from ddso.stores.offline import OfflineStore, events_table

pytestmark = pytest.mark.unit
T = datetime(2025, 3, 1, tzinfo=UTC)


def _write(store: OfflineStore, offset: int, rows: list[tuple[str, str, str]]) -> None:
    events = []
    for i, (customer, type_, day) in enumerate(rows):
        obj = {"event_id": f"e{offset + i}", "customer_id": customer, "type": type_,
               "event_time": f"{day}T10:00:00+00:00", "source": "crm"}
        if type_ == "offer_shown":
            obj.update(offer_id="o", product_id="p", channel="email")
        elif type_ == "enrollment":
            obj.update(enrollment_id="n", product_id="p", monthly_payment=10.0)
        elif type_ == "churn":
            obj.update(reason="other")
        events.append(parse_event_obj(obj))
    store.write_batch(events_table(events, range(offset, offset + len(rows)), "s", T),
                      "s", offset, offset + len(rows) - 1)


def test_counts_are_distinct_customers_and_follow_new_and_removed_files(tmp_path):
    store = OfflineStore(tmp_path)
    _write(store, 0, [("A", "offer_shown", "2025-01-01"), ("A", "offer_shown", "2025-01-02"),
                      ("B", "offer_shown", "2025-01-02"), ("A", "enrollment", "2025-01-05")])
    funnel = FunnelCounts(store.events_dir)
    assert funnel.update() == 3  # three event dates, one file each
    assert {s: len(v) for s, v in funnel.stages.items()} == {
        "contacted": 2, "enrolled": 1, "graduated": 0, "churned": 0}
    assert funnel.events == 4 and funnel.first_enrolled_day == {"A": 20093}
    assert funnel.update() == 0  # nothing new: nothing read

    _write(store, 4, [("C", "churn", "2025-01-05"), ("B", "enrollment", "2025-01-03")])
    assert funnel.update() == 2
    assert len(funnel.stages["enrolled"]) == 2 and len(funnel.stages["churned"]) == 1
    assert funnel.customers == {"A", "B", "C"} and funnel.events == 6

    # A replayed batch rewrites its own files with the same rows: counted once.
    _write(store, 4, [("C", "churn", "2025-01-05"), ("B", "enrollment", "2025-01-03")])
    for path in store.events_dir.rglob("part-s-000000000004-*.parquet"):
        os.utime(path, ns=(1, 1))
    funnel.update()
    assert funnel.events == 6 and len(funnel.stages["enrolled"]) == 2

    # A file that goes starts the count over.
    next(store.events_dir.glob("event_date=2025-01-03/*.parquet")).unlink()
    funnel.update()
    assert funnel.events == 5 and len(funnel.stages["enrolled"]) == 1


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(0.1, 0.0), (float("inf"), 3.0)]) == 0.1

    registry = CollectorRegistry()
    h = Histogram("ddso_http_request_seconds", "x", ["endpoint"], registry=registry,
                  buckets=(0.01, 0.1))
    for _ in range(10):
        h.labels("/v1/decide").observe(0.005)
    assert latency_by_endpoint(registry) == {
        "/v1/decide": {"requests": 10, "p50_ms": 5.0, "p99_ms": 9.9}}


def test_board_caches_for_its_ttl_and_compares_with_the_seed_baselines(tmp_path):
    settings = load_settings(home=str(tmp_path))
    store = OfflineStore(settings.offline_store_path())
    _write(store, 0, [("A", "offer_shown", "2025-01-01"), ("A", "enrollment", "2025-01-02")])
    now = [1000.0]
    board = KpiBoard(settings, ttl_s=2.0, clock=lambda: now[0])
    k = board.get()
    assert k["funnel"] == {"leads": 1, "contacted": 1, "enrolled": 1, "graduated": 0,
                           "churned": 0}
    assert k["rates"]["conversion"] == 1.0 and k["rates"]["conversion_baseline"] == 0.009
    assert k["conversion_series"] == [["2025-01-02", 1.0]]
    assert k["experiments"]["running"] is False and k["segments"]["available"] is False
    _write(store, 2, [("B", "offer_shown", "2025-01-03")])
    assert board.get() is k  # within the TTL: the cached answer
    now[0] += 2.0
    assert board.get()["funnel"]["leads"] == 2
