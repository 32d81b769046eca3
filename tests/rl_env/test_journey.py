"""The single environment: gymnasium contract, seeding, and the action mask's rules."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rl_env
from ddso.data.population import CHANNELS
from ddso.policy.eligibility import eligible_mask
from ddso.schemas.base import Band
from rl_env.config import RewardConfig
from rl_env.dynamics import ENROLLED, decode_actions, encode_actions
from rl_env.journey import CustomerJourneyEnv
from rl_env.observation import OBS_INDEX, OBS_NAMES, WEEKDAYS
from rl_env.policies import RandomMasked

pytestmark = pytest.mark.unit


def _make(**kwargs) -> gym.Env:
    return gym.make(rl_env.ENV_ID, pool_size=2_000, pool_seed=3, **kwargs)


@pytest.mark.parametrize("mode", ["box", "dict"])
def test_check_env_passes(mode):
    # check_env steps unmasked random samples, which the default env refuses (ValueError);
    # with masked_action="noop" the same dynamics treat them as no contact.
    check_env(_make(masked_action="noop", observation_mode=mode).unwrapped)


def test_registered_and_render():
    env = _make(render_mode="ansi")
    assert env.spec.id == "ddso/CustomerJourney-v0"
    env.reset(seed=0)
    assert "lead" in env.render()


def _rollout(env: gym.Env, seed: int, steps: int, policy_seed: int = 0):
    policy, rng = RandomMasked(contact_share=0.2), np.random.default_rng(policy_seed)
    obs, info = env.reset(seed=seed)
    trace = [obs]
    for _ in range(steps):
        action = int(policy(obs[None], info["action_mask"][None], rng)[0])
        obs, reward, terminated, truncated, info = env.step(action)
        trace += [obs, np.array([reward, terminated, truncated, action])]
        if terminated or truncated:
            obs, info = env.reset()
            trace.append(obs)
    return np.concatenate([t.ravel() for t in trace])


def test_same_seed_same_rollout():
    a, b = _rollout(_make(), 11, 600), _rollout(_make(), 11, 600)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, _rollout(_make(), 12, 600))


def test_observation_names_and_space():
    env = _make()
    obs, _ = env.reset(seed=1)
    assert obs.shape == (len(OBS_NAMES),) and obs in env.observation_space
    assert obs[OBS_INDEX["stage_lead"]] == 1 and obs[OBS_INDEX["day"]] == 0
    assert obs[OBS_INDEX["days_since_last_contact"]] == 3650.0


def test_masked_action_raises_with_reason():
    env = _make()
    for seed in range(50):
        _, info = env.reset(seed=seed)
        masked = np.flatnonzero(~info["action_mask"])
        if len(masked):
            break
    with pytest.raises(ValueError, match="masked: (no consent|not eligible)"):
        env.step(int(masked[0]))
    with pytest.raises(ValueError, match="outside"):
        env.step(env.action_space.n)


def test_noop_mode_charges_the_penalty_and_does_nothing():
    env = _make(masked_action="noop", reward=RewardConfig(masked_action_penalty=0.5))
    for seed in range(50):
        _, info = env.reset(seed=seed)
        masked = np.flatnonzero(~info["action_mask"])
        if len(masked):
            break
    _, reward, *_, info = env.step(int(masked[0]))
    assert info["masked_action"] and not info["contacted"] and reward <= -0.5


def test_random_masked_policy_respects_consent_caps_and_eligibility():
    """A policy that only takes allowed actions never breaks the rules the mask encodes."""
    env = _make()
    base = env.unwrapped
    programs = base.pool.programs
    caps = base.config.contact_policy
    policy, rng = RandomMasked(contact_share=0.6), np.random.default_rng(0)
    bands = [b.value for b in Band]
    checked = 0
    for episode in range(30):
        obs, info = env.reset(seed=100 + episode)
        facts = {"band": bands[int(obs[OBS_INDEX["assessment_band"]])],
                 "age": float(obs[OBS_INDEX["age"]]),
                 "debt_to_income": float(obs[OBS_INDEX["debt_to_income"]]),
                 "monthly_income": float(obs[OBS_INDEX["monthly_income"]])}
        eligible = eligible_mask(programs.limits, facts)
        week: list[int] = []
        done = False
        while not done:
            action = int(policy(obs[None], info["action_mask"][None], rng)[0])
            assert info["action_mask"][action]
            channel, offer = (int(x[0]) for x in decode_actions(np.array([action]), programs.size))
            if obs[OBS_INDEX["stage_lead"]] + obs[OBS_INDEX["stage_contacted"]] + obs[
                    OBS_INDEX["stage_qualified"]] == 0:
                assert action == 0, "only 'no contact' after enrollment"
            if channel >= 0:
                assert obs[OBS_INDEX[f"consent_{CHANNELS[channel]}"]] == 1
                assert offer < 0 or eligible[offer]
                week.append(channel)
                assert week.count(channel) <= caps.max_per_week[channel]
                assert len(week) <= caps.max_total_per_week
                checked += 1
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if obs[OBS_INDEX[f"weekday_{WEEKDAYS[0]}"]] == 1:
                week = []
    assert checked > 200


def _enroll_someone(env: gym.Env) -> dict:
    """Offer keen customers a program of their ideal kind once a week until one enrolls."""
    pool = env.unwrapped.pool
    kind_of_offer = np.r_[-1, pool.programs.kind]
    for row in np.argsort(-pool.interest * pool.eligible.any(1) * pool.consent.any(1))[:20]:
        obs, info = env.reset(seed=int(row), options={"customer": int(row)})
        done = False
        while not done:
            if obs[OBS_INDEX["stage_enrolled"]]:
                return info
            actions = np.flatnonzero(info["action_mask"])
            _, offers = decode_actions(actions, pool.programs.size)
            ideal = actions[kind_of_offer[offers + 1] == pool.ideal_kind[row]]
            weekly = len(ideal) and obs[OBS_INDEX["weekday_mon"]]
            obs, _, terminated, truncated, info = env.step(int(ideal[0]) if weekly else 0)
            done = terminated or truncated
    raise AssertionError("nobody enrolled")


def test_enrolled_customer_can_only_wait_and_episode_end_is_enforced():
    env = _make()
    info = _enroll_someone(env)
    base = env.unwrapped
    assert base._state.stage[0] == ENROLLED and info["stage"] == "enrolled"
    assert info["action_mask"].sum() == 1 and info["action_mask"][0]
    with pytest.raises(ValueError, match="only action 0"):
        env.step(int(encode_actions(np.array([0]), np.array([-1]), base.pool.programs.size)[0]))
    done, months = False, 0
    while not done:
        obs, _, terminated, truncated, info = env.step(0)
        months += 1
        done = terminated or truncated
        assert info["stage"] in ("active", "graduated", "dropped")
    assert terminated and info["stage"] in ("graduated", "dropped")
    assert months <= obs[OBS_INDEX["program_months"]]
    assert (info["stage"] == "graduated") == (obs[OBS_INDEX["program_payments"]] == months)
    with pytest.raises(RuntimeError, match="call reset"):
        env.unwrapped.step(0)


def test_reset_option_customer_is_checked():
    env = CustomerJourneyEnv(pool_size=2_000, pool_seed=3)
    with pytest.raises(ValueError, match="pool row"):
        env.reset(options={"customer": 2_000})
