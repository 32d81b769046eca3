"""The ppo benchmark runs at a tiny size and returns flat metrics (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import ppo
from ddso.errors import UserError


@pytest.mark.ray
def test_run_returns_flat_metrics(ray_session):
    metrics = ppo.run({"iterations": "1", "train_batch_size": "256", "minibatch_size": "128",
                       "num_epochs": "1", "num_envs_per_env_runner": "8", "hidden": "16"})
    assert metrics["iterations"] == 1 and metrics["env_steps"] >= 256
    for key in ("env_steps_per_s", "wall_s", "sampling_s_per_iteration",
                "learner_s_per_iteration"):
        assert isinstance(metrics[key], int | float) and metrics[key] > 0, key
    assert metrics["target_env_steps_per_s"] == 5_000
    assert not any(isinstance(v, dict | list) for v in metrics.values())


@pytest.mark.unit
def test_unknown_option_is_a_user_error():
    with pytest.raises(UserError, match="iteratoins"):
        ppo.run({"iteratoins": "1"})
