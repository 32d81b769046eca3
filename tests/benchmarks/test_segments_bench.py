"""The segments benchmark runs at a tiny size and writes flat metrics (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import segments
from ddso.bench import run_benchmark
from ddso.errors import UserError

pytestmark = pytest.mark.unit

TINY = ["customers=400", "days=120", "cut_day=80", "max_epochs=30"]
METHODS = ("kmeans", "deep")
OUTCOMES = ("conversion", "churn")


def test_tiny_run_writes_flat_json(tmp_path):
    path = tmp_path / "segments.json"
    result = run_benchmark("segments", path, TINY)
    metrics = json.loads(path.read_text())
    assert metrics == result
    assert not any(isinstance(v, dict | list) for v in metrics.values())
    assert (metrics["customers"], metrics["cut_day"], metrics["k"]) == (400, 80, 4)
    assert metrics["as_of"] == "2025-03-22"
    assert 0 < metrics["rows"] <= 400 - metrics["churned_before"]
    for rate in ("conversion_rate", "churn_rate"):
        assert 0 <= metrics[rate] <= 1, rate
    for m in METHODS:
        assert -1 <= metrics[f"{m}_silhouette"] <= 1, m
        assert -1 <= metrics[f"{m}_truth_ari"] <= 1, m
        assert 0 < metrics[f"{m}_smallest_share"] <= metrics[f"{m}_largest_share"] < 1, m
        for o in OUTCOMES:
            assert 0 <= metrics[f"{m}_{o}_separation"] <= 1, (m, o)
            assert 0 <= metrics[f"{m}_{o}_p_value"] <= 1, (m, o)
            assert 0 <= metrics[f"{m}_{o}_min_rate"] <= metrics[f"{m}_{o}_max_rate"] <= 1, (m, o)
    assert -1 <= metrics["deep_silhouette_embedding"] <= 1
    assert -1 <= metrics["kmeans_deep_ari"] <= 1
    assert 1 <= metrics["deep_epochs"] <= 30
    assert metrics["graph_batch_equals_stream"] == 1
    assert metrics["graph_events"] > 0 and metrics["graph_customers"] > 0
    for kind in ("copurchase", "coview"):
        assert metrics[f"graph_{kind}_edges"] >= 0
        assert 0 < metrics[f"graph_{kind}_items"] <= metrics["graph_items"]
    for key in ("compare_s", "deep_refit_s", "graph_batch_s", "graph_stream_s",
                "graph_stream_events_per_s"):
        assert isinstance(metrics[key], int | float) and metrics[key] > 0, key


@pytest.mark.parametrize("option, match", [
    ("cut_day=120", "cut_day"), ("max_epochs=0", "max_epochs"), ("stream_batch=0", "stream_batch"),
    ("skip=deep", "skip"),
])
def test_bad_options_are_user_errors(option, match):
    key, _, value = option.partition("=")
    with pytest.raises(UserError, match=match):
        segments.run({"customers": "10", "days": "120", "cut_day": "80", key: value})
