"""The rl_env benchmark runs at a tiny size and returns flat metrics (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import rl_env
from ddso.errors import UserError

pytestmark = pytest.mark.unit


def test_run_returns_flat_metrics():
    metrics = rl_env.run({"num_envs": "200", "steps": "20", "single_steps": "200",
                          "policy": "bau", "calibration_customers": "500"})
    for key in ("vector_steps_per_s", "single_steps_per_s", "vector_env_s", "single_env_s"):
        assert isinstance(metrics[key], int | float) and metrics[key] > 0, key
    assert metrics["vector_steps"] == 4_000
    assert 0 <= metrics["calibration_conversion_ci99_low"] <= metrics[
        "calibration_conversion_ci99_high"] <= 1
    assert not any(isinstance(v, dict | list) for v in metrics.values())


def test_unknown_policy_is_a_user_error():
    with pytest.raises(UserError, match="policy"):
        rl_env.run({"num_envs": "2", "steps": "1", "single_steps": "1", "policy": "greedy"})
