"""The generate benchmark runs at a tiny size and returns flat metrics (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import generate

pytestmark = pytest.mark.unit


def test_run_returns_flat_metrics():
    metrics = generate.run({"customers": "300", "days": "30", "seed": "1"})
    for key in ("events", "events_per_s", "customers_per_s", "wall_s", "peak_rss_mb",
                "bytes_written"):
        assert isinstance(metrics[key], int | float) and metrics[key] > 0, key
    assert not any(isinstance(v, dict | list) for v in metrics.values())
