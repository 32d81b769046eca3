"""Small, shared environments: a 2,000-customer pool keeps every test here fast."""

from __future__ import annotations

import pytest

from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool, synthetic_pool

SMALL = JourneyConfig(pool_size=2_000, pool_seed=3)


@pytest.fixture(scope="session")
def small_config() -> JourneyConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_pool() -> CustomerPool:
    return synthetic_pool(SMALL.pool_size, SMALL.pool_seed, SMALL.horizon_days)
