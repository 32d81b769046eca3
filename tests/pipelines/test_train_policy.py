"""PPO training job: a tiny run registers the exported policy and its learning curve, and the
numpy forward pass picks exactly the RLlib module's greedy actions, never a masked one."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ddso.errors import DataFileError, UserError
from ddso.models.registry import ModelRegistry
from pipelines.train_policy import MODEL_NAME, Args, main
from rl_env.config import JourneyConfig
from rl_env.customers import synthetic_pool
from rl_env.export import NumpyPolicy, ObsNormalizer
from rl_env.observation import OBS_NAMES
from rl_env.policies import RandomMasked
from rl_env.vector import CustomerJourneyVectorEnv

SMALL = JourneyConfig(pool_size=2_000, pool_seed=0)


def _rollout_observations(n: int = 300, steps: int = 15, seed: int = 0):
    """Observations and masks from a random rollout: varied stages, caps and consents."""
    pool = synthetic_pool(SMALL.pool_size, SMALL.pool_seed, SMALL.horizon_days)
    env = CustomerJourneyVectorEnv(n, SMALL, pool=pool)
    obs, info = env.reset(seed=seed)
    policy, rng = RandomMasked(0.3), np.random.default_rng(seed)
    seen_obs, seen_masks = [], []
    for _ in range(steps):
        seen_obs.append(obs)
        seen_masks.append(info["action_mask"])
        obs, _, _, _, info = env.step(policy(obs, info["action_mask"], rng))
    return np.concatenate(seen_obs), np.concatenate(seen_masks)


@pytest.fixture(scope="module")
def trained(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("train_policy")
    args = Args(registry=str(root / "registry"), out=str(root / "run"), iterations=2,
                train_batch_size=512, minibatch_size=128, num_epochs=1,
                num_envs_per_env_runner=16, hidden="32,32", pool_size=SMALL.pool_size,
                eval_episodes=200, json=str(root / "run.json"))
    return args, main(args)


@pytest.mark.ray
def test_a_tiny_run_registers_the_policy_and_its_learning_curve(trained):
    args, version = trained
    registry = ModelRegistry(args.registry)
    assert registry.champion(MODEL_NAME).version == version.version
    assert {"policy.npz", "learning_curve.csv", "learning_curve.json", "learning_curve.png"} <= set(
        version.metadata["artifacts"])
    assert version.artifact("learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with version.artifact("learning_curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert 0 < int(rows[0]["env_steps"]) < int(rows[1]["env_steps"])
    assert float(rows[1]["env_steps_per_s"]) > 0
    curve = json.loads(version.artifact("learning_curve.json").read_text())
    assert len(curve) == 2
    metrics = version.metadata["metrics"]
    assert metrics["train_env_steps"] == curve[-1]["env_steps"]
    assert set(metrics) >= {"eval_mean_return", "eval_conversion", "bau_mean_return"}
    assert version.metadata["features"] == list(OBS_NAMES)
    from rl_env.serving import load_policy

    served = load_policy(registry)  # what the decision API loads
    assert served.version == f"{MODEL_NAME}:{version.version}"
    assert len(served.programs) == (version.metadata["n_actions"] - 1) // 4 - 1
    run = json.loads(Path(args.json).read_text())
    assert run["version"] == version.version and "ppo" in run["evaluation"]["policies"]


@pytest.mark.ray
def test_numpy_policy_reproduces_the_rllib_module(trained):
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    _, version = trained
    policy = NumpyPolicy.load(version.artifact("policy.npz"))
    checkpoint = Path(version.metadata["rllib_checkpoint"])
    module = RLModule.from_checkpoint(
        checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy")
    obs, mask = _rollout_observations()
    batch = {Columns.OBS: {"observations": torch.from_numpy(policy.normalizer(obs)),
                           "action_mask": torch.from_numpy(mask.astype(np.float32))}}
    with torch.no_grad():
        logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS].numpy()
    np.testing.assert_allclose(policy.logits(obs)[mask], logits[mask], rtol=1e-4, atol=1e-4)
    expected = logits.argmax(1)
    actions = policy(obs, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(actions, expected)
    assert mask[np.arange(len(mask)), actions].all()


@pytest.mark.ray
def test_sampled_actions_respect_the_mask(trained):
    _, version = trained
    policy = NumpyPolicy.load(version.artifact("policy.npz")).sampling(True)
    obs, mask = _rollout_observations(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = policy(obs, mask, rng)
        assert mask[np.arange(len(mask)), actions].all()
    p = policy.probabilities(obs, mask)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (p[~mask] == 0).all()


def _random_policy(seed: int = 0) -> NumpyPolicy:
    rng = np.random.default_rng(seed)
    obs, _ = _rollout_observations(n=50, steps=3)
    sizes = [len(OBS_NAMES), 16, 85]
    layers = [(rng.normal(0, 0.3, (a, b)), rng.normal(0, 0.1, b), act)
              for a, b, act in zip(sizes, sizes[1:], ("tanh", "linear"), strict=False)]
    return NumpyPolicy(layers, ObsNormalizer.from_observations(obs), metadata={"k": 1})


@pytest.mark.unit
def test_numpy_policy_round_trips_through_npz(tmp_path):
    policy = _random_policy()
    loaded = NumpyPolicy.load(policy.save(tmp_path / "p.npz"))
    obs, mask = _rollout_observations(n=50, steps=3, seed=2)
    np.testing.assert_array_equal(loaded.logits(obs), policy.logits(obs))
    np.testing.assert_array_equal(loaded(obs, mask, None), policy(obs, mask, None))
    assert loaded.metadata == {"k": 1} and loaded.n_actions == 85


@pytest.mark.unit
def test_a_foreign_file_is_named(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, header=np.array(json.dumps({"format": "other"})))
    with pytest.raises(DataFileError, match="bad.npz"):
        NumpyPolicy.load(bad)
    with pytest.raises(DataFileError, match="no such"):
        NumpyPolicy.load(tmp_path / "missing.npz")


@pytest.mark.unit
def test_normalizer_rejects_the_wrong_width():
    with pytest.raises(UserError, match="OBS_NAMES"):
        ObsNormalizer.from_observations(np.zeros((3, 5)))
