"""The feedback benchmark runs at a tiny size and returns flat metrics (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import feedback

pytestmark = pytest.mark.integration


def test_run_labels_every_outcome_and_returns_flat_metrics():
    metrics = feedback.run({"rate": "2000", "seconds": "1", "decisions": "500"})
    assert metrics["events"] == 2000 and metrics["outcomes"] > 0
    assert metrics["outcomes_labelled"] == metrics["outcomes"]
    for key in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms", "peak_rss_mb"):
        assert isinstance(metrics[key], float) and metrics[key] > 0, key
    assert not any(isinstance(v, dict | list) for v in metrics.values())
