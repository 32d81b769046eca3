"""The learned baselines: greedy on an XGBoost propensity model, and LinUCB learning online."""

from __future__ import annotations

import numpy as np
import pytest

from ddso.data.population import CHANNELS
from rl_env.cohort import run_cohort
from rl_env.dynamics import encode_actions
from rl_env.evaluate import run_episodes
from rl_env.observation import OBS_INDEX
from rl_env.policies import (
    GreedyPropensity,
    LinUCB,
    RandomMasked,
    action_features,
    advised_kind,
    fit_greedy_propensity,
    log_contacts,
)
from rl_env.vector import CustomerJourneyVectorEnv

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def greedy(small_config, small_pool) -> GreedyPropensity:
    return fit_greedy_propensity(small_config, small_pool, journeys=3_000, seed=0, rounds=40)


def test_action_features_describe_channel_and_offer(small_pool):
    env = CustomerJourneyVectorEnv(3, pool=small_pool)
    obs, _ = env.reset(seed=0, options={"customers": np.arange(3)})
    p = small_pool.programs
    kind = advised_kind(obs[:1])[0]
    program = int(np.flatnonzero(p.kind == kind)[0])
    actions = np.array([0, encode_actions(np.array([2]), np.array([-1]), p.size)[0],
                        encode_actions(np.array([0]), np.array([program]), p.size)[0]])
    f = action_features(obs[[0, 0, 0]], actions, p)
    c = len(CHANNELS)
    assert f[0, :c].sum() == 0 and f[0, c + 2] == -1  # no contact: no channel, no kind
    assert f[1, 2] == 1 and f[1, c + 1] == 0  # a call without an offer
    assert f[2, 0] == 1 and f[2, c + 1] == 1 and f[2, c + 2] == kind and f[2, c + 3] == 1
    assert f[2, c + 4] == pytest.approx(np.log(p.monthly_payment[program] / 100.0))


def test_logged_contacts_are_labelled_by_later_enrollment(small_config, small_pool):
    env = CustomerJourneyVectorEnv(1_000, small_config, pool=small_pool)
    obs, actions, label, counts = log_contacts(env, RandomMasked(0.2), seed=0, window_days=7)
    assert len(obs) == len(actions) == len(label) > 1_000
    assert (actions > 0).all()
    # Every enrolled journey enrolled on a contact, so some contact carries its label.
    assert label.sum() > 0 and counts["enrolled"] <= label.sum()


def test_greedy_takes_only_allowed_actions_and_contacts_selectively(greedy, small_config,
                                                                    small_pool):
    env = CustomerJourneyVectorEnv(400, small_config, pool=small_pool)
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    contacted = []
    for _ in range(20):
        actions = greedy(obs, info["action_mask"], rng)
        assert info["action_mask"][np.arange(400), actions].all()
        contacted.append((actions > 0).mean())
        obs, _, _, _, info = env.step(actions)
    assert 0 < np.mean(contacted) < 1  # the threshold leaves some customers alone


def test_greedy_propensity_is_a_probability_and_a_higher_threshold_contacts_less(
        greedy, small_config, small_pool):
    env = CustomerJourneyVectorEnv(300, small_config, pool=small_pool)
    obs, info = env.reset(seed=2)
    rows, cols = np.nonzero(info["action_mask"][:, 1:])
    p = greedy.propensity(obs[rows], cols + 1)
    assert ((p >= 0) & (p <= 1)).all()
    strict = GreedyPropensity(greedy.booster, greedy.programs, greedy.value,
                              small_config.reward.contact_cost, threshold=1e9)
    assert (strict(obs, info["action_mask"], np.random.default_rng(0)) == 0).all()


def test_greedy_converts_more_than_business_as_usual(greedy, small_config, small_pool):
    bau = run_cohort(small_config, customers=1_500, seed=3, pool=small_pool)
    out = run_episodes(greedy, small_config, small_pool, 1_500, seed=3)
    assert out.enrolled.mean() > 2 * bau["conversion"]


def test_linucb_takes_only_allowed_actions_and_learns_online(small_config, small_pool):
    policy = LinUCB(small_pool.programs, alpha=0.05)
    env = CustomerJourneyVectorEnv(500, small_config, pool=small_pool)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(15):
        actions = policy(obs, info["action_mask"], rng)
        assert info["action_mask"][np.arange(500), actions].all()
        next_obs, reward, _, _, info = env.step(actions)
        policy.update(obs, actions, reward)
        obs = next_obs
    assert policy.steps_ == 15
    assert np.trace(policy.a_) > policy.dim  # it has seen data
    assert np.abs(np.linalg.solve(policy.a_, policy.b_)).sum() > 0


def test_linucb_updates_only_on_customers_being_acquired(small_pool):
    policy = LinUCB(small_pool.programs)
    env = CustomerJourneyVectorEnv(5, pool=small_pool)
    obs, _ = env.reset(seed=0)
    enrolled = obs.copy()
    for stage in ("stage_lead", "stage_contacted", "stage_qualified"):
        enrolled[:, OBS_INDEX[stage]] = 0
    enrolled[:, OBS_INDEX["stage_active"]] = 1
    before = policy.a_.copy()
    policy.update(enrolled, np.zeros(5, np.int64), np.ones(5))
    np.testing.assert_array_equal(policy.a_, before)
