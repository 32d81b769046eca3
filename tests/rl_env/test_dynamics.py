"""The pure dynamics: no mutation, action coding, rolling counts, program outcomes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ddso.data.population import sigmoid
from ddso.features.sets import CUSTOMER_FEATURES
from rl_env.dynamics import (
    CONTACTED,
    DROPPED,
    ENROLLED,
    GRADUATED,
    LEAD,
    N_UNIFORMS,
    QUALIFIED,
    action_mask,
    decode_actions,
    draw_uniforms,
    encode_actions,
    n_actions,
    new_journeys,
    reward,
    step,
)
from rl_env.observation import OBS_INDEX, SERVED, observation_space, observe

pytestmark = pytest.mark.unit


def test_action_coding_round_trips():
    p = 20
    actions = np.arange(n_actions(p))
    channel, offer = decode_actions(actions, p)
    assert channel[0] == -1 and offer[0] == -1
    assert set(channel[1:]) == {0, 1, 2, 3} and set(offer[1:]) == set(range(-1, p))
    assert np.array_equal(encode_actions(channel, offer, p), actions)


def test_served_columns_are_platform_features():
    assert set(SERVED) <= set(CUSTOMER_FEATURES)


def test_step_is_pure_and_all_ones_uniforms_change_only_the_clock(small_config, small_pool):
    n = 300
    state = new_journeys(small_pool, np.arange(n), np.zeros(n, np.int64))
    before = {f.name: getattr(state, f.name).copy() for f in dataclasses.fields(state)}
    new, events = step(small_config, small_pool, state, np.zeros(n, np.int64),
                       np.ones((n, N_UNIFORMS)))
    for name, value in before.items():
        assert np.array_equal(getattr(state, name), value), f"{name} was mutated"
    assert np.all(new.day == 1) and np.all(new.stage == LEAD)
    for f in dataclasses.fields(events):
        if f.name != "channel":
            assert not getattr(events, f.name).any(), f.name


def test_rolling_contact_counts_match_a_recount(small_config, small_pool):
    """contacts_7d / contacts_30d / offers_shown_90d against a brute-force recount."""
    rng = np.random.default_rng(0)
    n, p = 400, small_pool.programs.size
    state = new_journeys(small_pool, rng.integers(small_pool.size, size=n), rng.integers(7, size=n))
    contacts, offers = [], []
    for _ in range(120):
        mask = action_mask(small_config, small_pool, state)
        want = rng.random((n, mask.shape[1])) * mask
        want[:, 0] = 0.7  # mostly no contact, so caps bind only sometimes
        action = want.argmax(1)
        channel, offer = decode_actions(action, p)
        buying = state.stage <= QUALIFIED
        contacts.append(buying & (channel >= 0))
        offers.append(buying & (channel >= 0) & (offer >= 0))
        # No acceptance (column 1) and no churn (column 4): every journey stays on the daily
        # clock.
        u = draw_uniforms(rng, n)
        u[:, 1] = u[:, 4] = 1.0
        state, _ = step(small_config, small_pool, state, action, u)
    c, o = np.array(contacts), np.array(offers)
    assert np.array_equal(state.contacts_7d, c[-7:].sum(0))
    assert np.array_equal(state.contacts_30d, c[-30:].sum(0))
    assert np.array_equal(state.offers_90d, o[-90:].sum(0))
    assert np.array_equal(state.since_any_contact,
                          np.where(c.any(0), 120 - (119 - np.argmax(c[::-1], 0)), 3650.0))
    obs, space = observe(small_pool, state), observation_space()
    assert np.all((obs >= space.low) & (obs <= space.high))
    assert np.array_equal(obs[:, OBS_INDEX["contacts_30d"]], c[-30:].sum(0))


def test_program_completion_has_the_graduation_probability(small_config, small_pool):
    """The monthly dropout hazard makes P(graduate) = sigmoid(graduation logit)."""
    rng = np.random.default_rng(1)
    n = 20_000
    customers = rng.integers(small_pool.size, size=n)
    state = new_journeys(small_pool, customers, np.zeros(n, np.int64))
    program = np.full(n, 0)  # a 24-month program for everyone
    state = dataclasses.replace(state, stage=np.full(n, ENROLLED), program=program,
                                enrolled_day=np.zeros(n, np.int64))
    graduated = np.zeros(n, bool)
    for _ in range(small_pool.programs.months[0]):
        state, events = step(small_config, small_pool, state, np.zeros(n, np.int64),
                             draw_uniforms(rng, n))
        graduated |= events.graduated
        assert not (events.enrolled | events.churned | events.contacted).any()
    m = small_config.response
    expected = sigmoid(m.graduate_intercept + m.graduate_health * small_pool.health[customers]
                       + m.graduate_interest * small_pool.interest[customers]).mean()
    se = np.sqrt(expected * (1 - expected) / n)
    assert abs(graduated.mean() - expected) < 4 * se
    assert set(np.unique(state.stage)) <= {GRADUATED, DROPPED}


def test_contact_moves_lead_and_reward_counts_costs(small_config, small_pool):
    n = 50
    row = int(np.flatnonzero(small_pool.consent[:, 0])[0])
    state = new_journeys(small_pool, np.full(n, row), np.zeros(n, np.int64))
    email_no_offer = encode_actions(np.zeros(n, np.int64), np.full(n, -1),
                                    small_pool.programs.size)
    u = np.ones((n, N_UNIFORMS))
    u[: n // 2, 0] = 0.0  # half qualify
    new, events = step(small_config, small_pool, state, email_no_offer, u)
    assert np.all(new.stage[: n // 2] == QUALIFIED) and np.all(new.stage[n // 2:] == CONTACTED)
    assert np.all(new.week_contacts[:, 0] == 1) and np.all(new.since_contact[:, 0] == 1)
    cost = small_config.reward.contact_cost[0]
    assert np.allclose(reward(small_config.reward, events), -cost)
