"""The models benchmark returns its metric keys on reduced runs (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import models, recommend

KEYS = ("german_auc", "german_auc_xgb_plain", "german_auc_logreg", "cdnow_churn_auc",
        "cdnow_churn_auc_bgnbd", "cdnow_repeat_forecast_err", "cdnow_repeat_forecast_err_bgnbd")


@pytest.mark.unit
def test_reduced_run_returns_flat_metrics_in_unit_interval():
    metrics = models.run({"folds": "2", "german_rounds": "60", "cdnow_customers": "1500",
                          "seed": "1", "skip": "train,recommend"})
    for key in KEYS:
        assert 0 < metrics[key] < 1, key
    assert metrics["german_folds"] == 2 and metrics["cdnow_customers"] == 1500
    for key in ("german_wall_s", "cdnow_wall_s"):
        assert metrics[key] > 0
    assert not any(isinstance(v, dict | list) for v in metrics.values())


@pytest.mark.unit
def test_skip_parts():
    metrics = models.run({"skip": "german,cdnow,train,recommend"})
    assert "german_auc" not in metrics and "cdnow_churn_auc" not in metrics
    assert "train_s_ray" not in metrics and "recommend_wide_deep_ndcg10" not in metrics


@pytest.mark.ray
@pytest.mark.integration
def test_training_scale_and_scoring_figures_in_the_same_json(ray_session):
    metrics = models.run({"skip": "german,cdnow,recommend", "train_rows": "2000",
                          "train_features": "6", "train_rounds": "3", "train_workers": "1",
                          "score_calls": "100"})
    for key in ("train_s_ray", "train_s_plain", "train_ratio", "score_p50_us", "score_p99_us"):
        assert isinstance(metrics[key], float) and metrics[key] > 0, key
    assert (metrics["train_rows"], metrics["train_features"]) == (2000, 6)
    assert not any(isinstance(v, dict | list) for v in metrics.values())


@pytest.mark.integration
def test_recommender_figures_in_the_same_json():
    metrics = models.run({"skip": "german,cdnow,train", "recommend_customers": "1500",
                          "recommend_days": "180", "seed": "1", "recommend_test_days": "60"})
    assert metrics["recommend_test_customers"] > 0 and metrics["recommend_seed"] == 1
    for name in recommend.models():
        for suffix in ("hr10", "ndcg10", "map10", "coverage", "fit_s", "score_p50_ms",
                       "score_p99_ms"):
            value = metrics[f"recommend_{name}_{suffix}"]
            assert isinstance(value, int | float) and value >= 0, (name, suffix)
        assert metrics[f"recommend_{name}_coverage"] > 0, name
        p50, p99 = (metrics[f"recommend_{name}_score_p{q}_ms"] for q in (50, 99))
        assert p99 >= p50 > 0, name
    assert metrics["recommend_best_deep_ndcg10"] == max(
        metrics[f"recommend_{n}_ndcg10"] for n in recommend.DEEP)
    assert not any(isinstance(v, dict | list) for v in metrics.values())
