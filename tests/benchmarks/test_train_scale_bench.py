"""The train_scale benchmark at a tiny size returns flat metrics (no timing asserted)."""

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.integration]


def test_run_returns_flat_metrics(ray_session):
    from benchmarks import train_scale

    # Two workers: each gets its own share of the rows through the object store.
    m = train_scale.run(
        {"rows": "3000", "features": "8", "rounds": "5", "workers": "2", "score_calls": "200"}
    )
    for key in ("train_s_plain", "train_s_ray", "train_ratio", "score_p50_us", "score_p99_us"):
        assert isinstance(m[key], float) and m[key] > 0, key
    assert (m["train_rows"], m["train_features"], m["train_ray_workers"]) == (3000, 8, 2)
    assert abs(m["train_valid_auc_plain_minus_ray"]) < 0.05  # the same model, trained two ways
