"""The models benchmark returns its metric keys, in (0, 1), on a reduced run (no timing)."""

from __future__ import annotations

import pytest

from benchmarks import models

pytestmark = pytest.mark.unit

KEYS = ("german_auc", "german_auc_xgb_plain", "german_auc_logreg", "cdnow_churn_auc",
        "cdnow_churn_auc_bgnbd", "cdnow_repeat_forecast_err", "cdnow_repeat_forecast_err_bgnbd")


def test_reduced_run_returns_flat_metrics_in_unit_interval():
    metrics = models.run({"folds": "2", "german_rounds": "60", "cdnow_customers": "1500",
                          "seed": "1"})
    for key in KEYS:
        assert 0 < metrics[key] < 1, key
    assert metrics["german_folds"] == 2 and metrics["cdnow_customers"] == 1500
    for key in ("german_wall_s", "cdnow_wall_s"):
        assert metrics[key] > 0
    assert not any(isinstance(v, dict | list) for v in metrics.values())


def test_skip_parts():
    metrics = models.run({"skip": "german,cdnow"})
    assert "german_auc" not in metrics and "cdnow_churn_auc" not in metrics
