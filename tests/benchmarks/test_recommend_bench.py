"""The recommend benchmark runs at a tiny size and returns flat, positive metrics."""

from __future__ import annotations

import pytest

from benchmarks import recommend

pytestmark = pytest.mark.integration


def test_run_returns_flat_metrics():
    metrics = recommend.run({"customers": "1500", "days": "180", "seed": "1", "test_days": "60"})
    assert metrics["test_customers"] > 0
    for name in recommend.models():
        for suffix in ("hr10", "ndcg10", "map10", "coverage", "fit_s"):
            value = metrics[f"{name}_{suffix}"]
            assert isinstance(value, int | float) and value >= 0, (name, suffix)
        assert metrics[f"{name}_coverage"] > 0, name
    assert not any(isinstance(v, dict | list) for v in metrics.values())
