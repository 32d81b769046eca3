"""The backfill benchmark runs at a tiny size and returns flat metrics (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import backfill

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


def test_run_returns_flat_metrics():
    metrics = backfill.run(
        {"sale_lines": "5000", "customers": "200", "master": "local[2]", "shuffle_partitions": "2"}
    )
    for key in (
        "sale_lines",
        "events",
        "purchases",
        "customers",
        "wall_s",
        "rows_per_s",
        "input_gen_s",
        "peak_rss_mb",
    ):
        assert isinstance(metrics[key], int | float) and metrics[key] > 0, key
    assert metrics["sale_lines"] == 5000 and metrics["feature_rows"] == 200
    assert metrics["spark_master"] == "local[2]"
    assert not any(isinstance(v, dict | list) for v in metrics.values())
