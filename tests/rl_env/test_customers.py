"""Customer pools: the generator's customers, one eligibility rule table, real-profile pools."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from ddso.data.population import draw_population
from ddso.data.world import build_world
from ddso.features.financial import FEATURE_COLUMNS
from ddso.policy.eligibility import eligible_mask
from ddso.schemas.base import Band
from rl_env.customers import (
    POOL_START,
    ProgramTable,
    eligibility_matrix,
    pool_from_tables,
    synthetic_pool,
)
from rl_env.journey import CustomerJourneyEnv

pytestmark = pytest.mark.unit


def test_eligibility_matrix_agrees_with_the_platform_rule(small_pool):
    """The vectorised check gives eligible_mask's answer, customer by customer."""
    bands = [b.value for b in Band]
    income = small_pool.financial[:, FEATURE_COLUMNS.index("monthly_income")]
    dti = small_pool.financial[:, FEATURE_COLUMNS.index("debt_to_income")]
    for row in range(0, small_pool.size, 7):
        facts = {"band": bands[small_pool.band[row]], "age": small_pool.age[row],
                 "debt_to_income": dti[row], "monthly_income": income[row]}
        assert np.array_equal(small_pool.eligible[row],
                              eligible_mask(small_pool.programs.limits, facts)), row
    assert 0.2 < small_pool.eligible.mean() < 0.9


def test_unknown_facts_fail_the_rules_that_need_them(small_pool):
    limits = small_pool.programs.limits
    facts = {"band": np.array([0.0]), "age": np.array([40.0]),
             "debt_to_income": np.array([np.nan]), "monthly_income": np.array([9_000.0])}
    row = eligibility_matrix(limits, facts)[0]
    assert np.array_equal(row, limits["eligibility_max_debt_to_income"].isna().to_numpy())


def test_synthetic_pool_is_the_generators_chunk_zero():
    seed, days = 3, 180
    start = np.datetime64(POOL_START.isoformat(), "us")
    world = build_world(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))),
                        start, days)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, 0)))
    pop = draw_population(rng, world, 0, 50, int(start.astype(np.int64)), days, seed)
    big = synthetic_pool(50, seed, days)
    assert list(big.customer_ids) == pop.ids.to_pylist()
    assert np.array_equal(big.health, pop.health) and np.array_equal(big.consent, pop.consent)
    with pytest.raises(ValueError):
        big.health[0] = 1.0  # pools are shared read-only


def test_pool_from_real_tables_runs_in_the_env():
    """Warehouse customers + financial profiles (no latent truth) make a working pool."""
    seed, days = 5, 30
    start = np.datetime64(POOL_START.isoformat(), "us")
    world = build_world(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))),
                        start, days)
    pop = draw_population(np.random.default_rng(1), world, 0, 300, int(start.astype(np.int64)),
                          days, seed)
    pool = pool_from_tables(pa.table(pop.columns), pop.profiles, ProgramTable.from_world(world),
                            date(2025, 1, 1), np.random.default_rng(2))
    assert pool.size == 300 and list(pool.customer_ids) == pop.ids.to_pylist()
    assert np.array_equal(pool.consent, pop.consent)
    # The scorecard band tracks the generator's band: healthier profiles score better.
    assert np.corrcoef(pool.band, pop.band)[0, 1] > 0.4
    env = CustomerJourneyEnv(pool=pool)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info["action_mask"][0]
    with pytest.raises(ValueError, match="no financial profile"):
        pool_from_tables(pa.table(pop.columns), pop.profiles.slice(0, 10),
                         ProgramTable.from_world(world), date(2025, 1, 1),
                         np.random.default_rng(2))
