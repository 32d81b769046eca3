"""The dashboard benchmark runs at a tiny size and returns flat metrics (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import dashboard

pytestmark = [pytest.mark.integration]


def test_run_returns_flat_metrics():
    why = dashboard.browser_missing()
    if why:  # `make test` installs it (scripts/services.sh): its absence is a failure
        pytest.fail(f"headless Chromium is required: {why}")
    metrics = dashboard.run({"customers": "200", "days": "60", "loads": "1", "requests": "5"})
    for key in ("first_paint_ms", "first_contentful_paint_ms", "kpis_cold_ms", "kpis_p50_ms",
                "kpis_p99_ms", "events", "files"):
        assert isinstance(metrics[key], int | float) and metrics[key] > 0, key
    assert not any(isinstance(v, dict | list) for v in metrics.values())
