"""Funnel rates of a cohort: every pool customer through one episode under a policy.

This is how the environment is calibrated: :func:`run_cohort` with the
:class:`~rl_env.policies.BusinessAsUsual` policy over the default configuration gives the
DDSO seed's "before" rates (conversion ~0.9% of leads, graduation ~0.69%). Rates are over
leads, like the generator's: customers who could never be contacted count in the denominator.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool, synthetic_pool
from rl_env.journey import EVENT_KEYS
from rl_env.policies import BusinessAsUsual
from rl_env.vector import CustomerJourneyVectorEnv

Policy = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def wilson_interval(successes: int, n: int, z: float = 2.576) -> tuple[float, float]:
    """Wilson score interval of a proportion (``z`` = 2.576: 99%)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def run_cohort(config: JourneyConfig | None = None, policy: Policy | None = None,
               customers: int = 200_000, seed: int = 0, pool: CustomerPool | None = None
               ) -> dict[str, float | int]:
    """Run each of ``customers`` pool customers (the first rows) through one episode.

    ``policy`` defaults to business as usual; the policy draws from its own generator seeded
    from ``seed``. Returns counts (``leads``, ``contacts``, and customers who ever
    ``contacted``/``enrolled``/``graduated``/``dropped``/``churned``/``complained``), rates
    over leads, mean return and the number of vector steps taken.
    """
    config = config or JourneyConfig()
    pool = pool if pool is not None else synthetic_pool(customers, config.pool_seed,
                                                        config.horizon_days)
    if customers > pool.size:
        raise ValueError(f"customers={customers}: the pool holds only {pool.size}")
    policy = policy or BusinessAsUsual(pool.programs, config.horizon_days)
    env = CustomerJourneyVectorEnv(customers, config=config.with_overrides(
        observation_mode="box"), pool=pool)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    obs, info = env.reset(seed=seed, options={"customers": np.arange(customers)})
    running = np.ones(customers, bool)
    ever = {key: np.zeros(customers, bool) for key in EVENT_KEYS}
    returns, contacts, steps = np.zeros(customers), 0, 0
    while running.any():
        actions = policy(obs, info["action_mask"], rng)
        obs, r, terminated, truncated, info = env.step(actions)
        steps += 1
        for key in EVENT_KEYS:
            ever[key] |= info[key] & running
        contacts += int((info["contacted"] & running).sum())
        returns += r * running
        running &= ~(terminated | truncated)
    env.close()
    counts = {key: int(ever[key].sum()) for key in EVENT_KEYS}
    out: dict[str, float | int] = {"leads": customers, "contacts": contacts, "steps": steps,
                                   **counts}
    for key in ("contacted", "enrolled", "graduated", "dropped", "churned", "complained"):
        out[f"{key}_rate"] = counts[key] / customers
    out["conversion"] = out.pop("enrolled_rate")
    out["graduation"] = out.pop("graduated_rate")
    out["mean_return"] = float(returns.mean())
    out["contacts_per_lead"] = contacts / customers
    return out
