"""Benchmark of the customer-journey environment: raw steps per second, and calibration.

Options: ``num_envs`` (default 10000) journeys stepped ``steps`` times (default 200) by the
vector environment; ``single_steps`` (default 20000) steps of the single environment;
``policy`` (``random``, the default: uniform over allowed actions a third of the time and no
contact otherwise; ``bau``: business as usual; ``none``); ``seed`` (default 0); and
``calibration_customers`` (default 0: skipped) to also run a business-as-usual cohort and
report its conversion and graduation with 99% intervals. Only ``env.step`` is timed for the
steps-per-second figures (the policy's time is reported apart); numpy runs on one core.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ddso.errors import UserError
from rl_env.cohort import run_cohort, wilson_interval
from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool, synthetic_pool
from rl_env.journey import CustomerJourneyEnv
from rl_env.policies import BusinessAsUsual, NoContact, RandomMasked
from rl_env.vector import CustomerJourneyVectorEnv


def _policy(name: str, pool: CustomerPool, config: JourneyConfig) -> Callable:
    policies = {"random": lambda: RandomMasked(contact_share=1 / 3),
                "bau": lambda: BusinessAsUsual(pool.programs, config.horizon_days),
                "none": NoContact}
    if name not in policies:
        raise UserError(f"bench rl_env: policy={name!r}; choose one of {sorted(policies)}")
    return policies[name]()


def _vector(config: JourneyConfig, pool: CustomerPool, policy_name: str, num_envs: int,
            steps: int, seed: int) -> dict[str, float | int]:
    env = CustomerJourneyVectorEnv(num_envs, config, pool=pool)
    policy, rng = _policy(policy_name, pool, config), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    env_s = policy_s = 0.0
    episodes = 0
    for _ in range(steps):
        began = time.perf_counter()
        actions = policy(obs, info["action_mask"], rng)
        middle = time.perf_counter()
        obs, _, terminated, truncated, info = env.step(actions)
        env_s += time.perf_counter() - middle
        policy_s += middle - began
        episodes += int((terminated | truncated).sum())
    return {"vector_num_envs": num_envs, "vector_steps": num_envs * steps,
            "vector_env_s": round(env_s, 3), "vector_policy_s": round(policy_s, 3),
            "vector_steps_per_s": round(num_envs * steps / env_s, 1),
            "vector_episodes": episodes}


def _single(config: JourneyConfig, pool: CustomerPool, policy_name: str, steps: int,
            seed: int) -> dict[str, float | int]:
    env = CustomerJourneyEnv(config, pool=pool)
    policy, rng = _policy(policy_name, pool, config), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    env_s = 0.0
    for _ in range(steps):
        action = int(policy(obs[None], info["action_mask"][None], rng)[0])
        began = time.perf_counter()
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()
        env_s += time.perf_counter() - began
    return {"single_steps": steps, "single_env_s": round(env_s, 3),
            "single_steps_per_s": round(steps / env_s, 1)}


def _calibration(config: JourneyConfig, customers: int, seed: int) -> dict[str, float | int]:
    began = time.perf_counter()
    cohort = run_cohort(config, customers=customers, seed=seed)
    out: dict[str, float | int] = {"calibration_customers": customers,
                                   "calibration_wall_s": round(time.perf_counter() - began, 3)}
    for event, name in (("enrolled", "conversion"), ("graduated", "graduation")):
        low, high = wilson_interval(cohort[event], customers)
        out.update({f"calibration_{name}": cohort[event] / customers,
                    f"calibration_{name}_ci99_low": round(low, 6),
                    f"calibration_{name}_ci99_high": round(high, 6)})
    return out


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Time the vector and single environments (see module docstring)."""
    num_envs = int(options.get("num_envs", 10_000))
    steps = int(options.get("steps", 200))
    single_steps = int(options.get("single_steps", 20_000))
    policy = options.get("policy", "random")
    seed = int(options.get("seed", 0))
    customers = int(options.get("calibration_customers", 0))
    config = JourneyConfig()
    pool = synthetic_pool(config.pool_size, config.pool_seed, config.horizon_days)
    out: dict[str, float | int | str] = {"policy": policy, "seed": seed, "cores_used": 1}
    with threadpool_limits(1):
        out.update(_vector(config, pool, policy, num_envs, steps, seed))
        out.update(_single(config, pool, policy, single_steps, seed))
        if customers:
            out.update(_calibration(config, customers, seed))
    return out
