"""Benchmark of PPO training throughput on the customer-journey environment (RLlib, new stack).

The configuration of :mod:`pipelines.train_policy` (action-masking module, vector env,
learner in the driver), on the local Ray of the settings (2 CPUs by default). Options:
``iterations`` (default 5, timed after one warm-up iteration), ``num_env_runners`` (0: sample
in the driver), ``num_envs_per_env_runner`` (64), ``train_batch_size`` (8192),
``minibatch_size`` (1024), ``num_epochs`` (4), ``hidden`` (``64,64``) and ``seed`` (0).

``env_steps_per_s`` is env steps sampled over the wall time of the timed iterations
(sampling, learning and weight sync together: what training actually achieves), against
the design target of 5,000 on 2 cores; RLlib's own sampling and learner timers are reported
beside it.
"""

from __future__ import annotations

import time

from ddso.config import load_settings
from ddso.errors import UserError
from ddso.runtime import init_ray
from pipelines.train_policy import (
    RLLIB_ENV,
    Args,
    build_config,
    fit_normalizer,
    make_training_env,
)
from rl_env.config import JourneyConfig
from rl_env.customers import synthetic_pool

TARGET_ENV_STEPS_PER_S = 5_000


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Train PPO for a few iterations and time them (see module docstring)."""
    import torch
    from ray.tune.registry import register_env

    known = {"iterations", "num_env_runners", "num_envs_per_env_runner", "train_batch_size",
             "minibatch_size", "num_epochs", "hidden", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"bench ppo: unknown option(s) {unknown}; known: {sorted(known)}")
    iterations = int(options.get("iterations", 5))
    args = Args(num_env_runners=int(options.get("num_env_runners", 0)),
                num_envs_per_env_runner=int(options.get("num_envs_per_env_runner", 64)),
                train_batch_size=int(options.get("train_batch_size", 8192)),
                minibatch_size=int(options.get("minibatch_size", 1024)),
                num_epochs=int(options.get("num_epochs", 4)),
                hidden=options.get("hidden", "64,64"), seed=int(options.get("seed", 0)))
    torch.set_num_threads(1)  # see pipelines.train_policy.main
    settings = load_settings()
    init_ray(settings)
    register_env(RLLIB_ENV, make_training_env)
    config = JourneyConfig(pool_size=args.pool_size, pool_seed=args.pool_seed,
                           horizon_days=args.horizon_days)
    pool = synthetic_pool(config.pool_size, config.pool_seed, config.horizon_days)
    algo = build_config(args, fit_normalizer(config, pool, args.seed)).build_algo()
    try:
        result = algo.train()  # warm-up: first sample, module and optimizer set-up
        before = result["env_runners"]["num_env_steps_sampled_lifetime"]
        began = time.perf_counter()
        for _ in range(iterations):
            result = algo.train()
        wall = time.perf_counter() - began
    finally:
        algo.stop()
    steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"] - before)
    timers = result.get("timers", {})
    return {
        "iterations": iterations, "num_env_runners": args.num_env_runners,
        "num_envs_per_env_runner": args.num_envs_per_env_runner,
        "train_batch_size": args.train_batch_size, "minibatch_size": args.minibatch_size,
        "num_epochs": args.num_epochs, "hidden": args.hidden,
        "ray_num_cpus": settings.ray.num_cpus,
        "env_steps": steps, "wall_s": round(wall, 3),
        "env_steps_per_s": round(steps / wall, 1),
        "sampling_s_per_iteration": round(float(timers.get("env_runner_sampling_timer", 0)), 3),
        "learner_s_per_iteration": round(float(timers.get("learner_update_timer", 0)), 3),
        "target_env_steps_per_s": TARGET_ENV_STEPS_PER_S,
    }
