"""The vector environment: the single environment's dynamics, on arrays."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rl_env
from rl_env.cohort import run_cohort, wilson_interval
from rl_env.journey import CustomerJourneyEnv
from rl_env.policies import BusinessAsUsual, RandomMasked
from rl_env.vector import CustomerJourneyVectorEnv

pytestmark = pytest.mark.unit


def test_one_journey_replays_the_single_env_exactly(small_config, small_pool):
    """Same seed, same policy draws: identical observations, rewards and ends, across resets."""
    config = small_config.with_overrides(horizon_days=60)
    single = CustomerJourneyEnv(config, pool=small_pool)
    vector = CustomerJourneyVectorEnv(1, config, pool=small_pool)
    policy = RandomMasked(contact_share=0.3)
    rng_s, rng_v = np.random.default_rng(5), np.random.default_rng(5)
    obs, info = single.reset(seed=3)
    vobs, vinfo = vector.reset(seed=3)
    episodes = steps = 0
    while episodes < 15:
        assert np.array_equal(obs, vobs[0])
        assert np.array_equal(info["action_mask"], vinfo["action_mask"][0])
        action = policy(obs[None], info["action_mask"][None], rng_s)
        vaction = policy(vobs, vinfo["action_mask"], rng_v)
        obs, reward, terminated, truncated, info = single.step(int(action[0]))
        vobs, vreward, vterminated, vtruncated, vinfo = vector.step(vaction)
        steps += 1
        assert (reward, terminated, truncated) == (vreward[0], vterminated[0], vtruncated[0])
        assert info["enrolled"] == vinfo["enrolled"][0]
        if terminated or truncated:
            episodes += 1
            obs, info = single.reset()
            vobs, vreward, vterminated, vtruncated, vinfo = vector.step(np.array([5]))
            assert vreward[0] == 0 and not (vterminated[0] or vtruncated[0])
    assert steps > 300


def test_made_through_the_registry_and_spaces_hold(small_config):
    env = gym.make_vec(rl_env.ENV_ID, num_envs=64, vectorization_mode="vector_entry_point",
                       pool_size=small_config.pool_size, pool_seed=small_config.pool_seed)
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, env.single_observation_space.shape[0])
    assert obs in env.observation_space and info["action_mask"].shape == (64, 85)
    policy, rng = RandomMasked(), np.random.default_rng(0)
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(policy(obs, info["action_mask"], rng))
        assert obs in env.observation_space and reward.shape == (64,)
    env.close()


def test_masked_action_names_the_journey(small_config, small_pool):
    env = CustomerJourneyVectorEnv(8, small_config, pool=small_pool)
    _, info = env.reset(seed=1)
    rows, actions = np.nonzero(~info["action_mask"])
    chosen = np.zeros(8, np.int64)
    chosen[rows[0]] = actions[0]
    with pytest.raises(ValueError, match=f"journey {rows[0]}: action {actions[0]} is masked"):
        env.step(chosen)


def test_vector_rates_match_many_single_episodes(small_config, small_pool):
    """Business as usual through 150 single-env episodes and through a vector cohort."""
    config = small_config.with_overrides(horizon_days=60)
    policy = BusinessAsUsual(small_pool.programs, config.horizon_days, offers_per_customer=10.0)
    env = CustomerJourneyEnv(config, pool=small_pool)
    rng = np.random.default_rng(0)
    contacted = qualified = 0
    n = 150
    for episode in range(n):
        obs, info = env.reset(seed=episode, options={"customer": episode})
        done, seen = False, set()
        while not done:
            action = policy(obs[None], info["action_mask"][None], rng)[0]
            obs, _, terminated, truncated, info = env.step(int(action))
            seen |= {k for k in ("contacted", "qualified") if info[k]}
            done = terminated or truncated
        contacted += "contacted" in seen
        qualified += "qualified" in seen
    cohort = run_cohort(config, policy, customers=small_pool.size, seed=1, pool=small_pool)
    for name, count in (("contacted", contacted), ("qualified", qualified)):
        low, high = wilson_interval(count, n)
        assert low <= cohort[name] / cohort["leads"] <= high, name
