"""Rule policies: only allowed actions, and business as usual behaves like the legacy campaign."""

from __future__ import annotations

import numpy as np
import pytest

from ddso.data.population import CHANNELS
from rl_env.dynamics import decode_actions
from rl_env.policies import BusinessAsUsual, NoContact, RandomMasked, advised_kind
from rl_env.vector import CustomerJourneyVectorEnv

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("make", [lambda pool, h: BusinessAsUsual(pool.programs, h, 30.0),
                                  lambda pool, h: RandomMasked(), lambda pool, h: NoContact()],
                         ids=["business_as_usual", "random_masked", "no_contact"])
def test_policies_take_only_allowed_actions(small_config, small_pool, make):
    env = CustomerJourneyVectorEnv(500, small_config, pool=small_pool)
    policy, rng = make(small_pool, small_config.horizon_days), np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    for _ in range(30):
        actions = policy(obs, info["action_mask"], rng)
        assert info["action_mask"][np.arange(500), actions].all()
        obs, _, _, _, info = env.step(actions)


def test_business_as_usual_prefers_the_preferred_channel_and_advised_kind(small_config,
                                                                         small_pool):
    env = CustomerJourneyVectorEnv(2_000, small_config, pool=small_pool)
    policy = BusinessAsUsual(small_pool.programs, small_config.horizon_days, 180.0)
    obs, info = env.reset(seed=0, options={"customers": np.arange(2_000)})
    actions = policy(obs, info["action_mask"], np.random.default_rng(0))
    channel, offer = decode_actions(actions, small_pool.programs.size)
    contacted = channel >= 0
    assert contacted.mean() > 0.7  # everyone reachable is contacted at this rate
    preferred = small_pool.preferred[:2_000]
    assert (channel == preferred)[contacted].mean() > 0.6
    kinds = small_pool.programs.kind[offer[offer >= 0]]
    assert (kinds == advised_kind(obs)[offer >= 0]).mean() > 0.45
    assert set(np.unique(channel[contacted])) <= set(range(len(CHANNELS)))
