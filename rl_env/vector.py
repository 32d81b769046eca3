"""Many customer journeys stepped at once in numpy: a gymnasium ``VectorEnv``.

The same dynamics as :class:`rl_env.journey.CustomerJourneyEnv`, on arrays of ``num_envs``
journeys; with one journey and the same seed it reproduces the single environment's rollout
exactly. Finished journeys restart with a new customer on the next step (gymnasium's
next-step autoreset: that step's action for them is ignored and they report reward 0).
``info`` holds full-length arrays: ``action_mask`` (num_envs, actions), ``stage``,
``customer`` and the per-step events of :data:`rl_env.journey.EVENT_KEYS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool, synthetic_pool
from rl_env.dynamics import (
    N_UNIFORMS,
    JourneyState,
    StepEvents,
    action_mask,
    draw_starts,
    draw_uniforms,
    n_actions,
    new_journeys,
    resolve_actions,
    reward,
    step,
    write_rows,
)
from rl_env.journey import EVENT_KEYS
from rl_env.observation import make_observation_space, observe, package


class CustomerJourneyVectorEnv(VectorEnv):
    """``num_envs`` customer journeys in numpy (see the module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, config: JourneyConfig | None = None,
                 pool: CustomerPool | None = None, **overrides: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs}: must be at least 1")
        self.config = (config or JourneyConfig()).with_overrides(**overrides)
        self.pool = pool if pool is not None else synthetic_pool(
            self.config.pool_size, self.config.pool_seed, self.config.horizon_days)
        self.num_envs = num_envs
        self.single_action_space = spaces.Discrete(n_actions(self.pool.programs.size))
        self.single_observation_space = make_observation_space(
            self.config.observation_mode, int(self.single_action_space.n))
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._state: JourneyState | None = None
        self._mask = np.ones((num_envs, int(self.single_action_space.n)), bool)
        self._restart = np.zeros(num_envs, bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start every journey; ``options["customers"]`` picks their pool rows (else drawn)."""
        super().reset(seed=seed)
        chosen = None
        if options and options.get("customers") is not None:
            chosen = np.asarray(options["customers"], dtype=np.int64)
            if chosen.shape != (self.num_envs,) or chosen.min() < 0 or (
                    chosen.max() >= self.pool.size):
                raise ValueError(f"options['customers']: need {self.num_envs} pool rows in "
                                 f"0..{self.pool.size - 1}")
        customers, weekday0 = draw_starts(self.np_random, self.pool.size, self.num_envs, chosen)
        self._state = new_journeys(self.pool, customers, weekday0)
        self._mask = action_mask(self.config, self.pool, self._state)
        self._restart = np.zeros(self.num_envs, bool)
        return self._observation(), self._info(None, np.zeros(self.num_envs, bool))

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("step() before reset(): call reset() first")
        n = self.num_envs
        restart = np.flatnonzero(self._restart)
        live = np.flatnonzero(~self._restart)
        fresh = None
        if len(restart):
            fresh = new_journeys(self.pool, *draw_starts(self.np_random, self.pool.size,
                                                         len(restart)))
        # Journeys about to restart are stepped idle (action 0, uniforms of 1: nothing can
        # happen) and then overwritten, so only live journeys consume randomness.
        uniforms = np.ones((n, N_UNIFORMS))
        if len(live):
            uniforms[live] = draw_uniforms(self.np_random, len(live))
        actions = np.where(self._restart, 0, np.asarray(actions, dtype=np.int64).reshape(n))
        actions, masked = resolve_actions(self.config, self.pool, self._state, actions,
                                          self._mask)
        self._state, events = step(self.config, self.pool, self._state, actions, uniforms)
        rewards = reward(self.config.reward, events, masked)
        terminated, truncated = events.terminated, events.truncated & ~self._restart
        if fresh is not None:
            write_rows(self._state, restart, fresh)
        self._restart = terminated | truncated
        self._mask = action_mask(self.config, self.pool, self._state)
        return self._observation(), rewards, terminated, truncated, self._info(events, masked)

    def action_masks(self) -> np.ndarray:
        """(num_envs, actions) bool: the allowed actions now."""
        return self._mask.copy()

    def _observation(self):
        return package(self.config.observation_mode, observe(self.pool, self._state),
                       self._mask)

    def _info(self, events: StepEvents | None, masked: np.ndarray) -> dict[str, np.ndarray]:
        info: dict[str, np.ndarray] = {"action_mask": self._mask.copy(),
                                       "customer": self._state.customer.copy(),
                                       "stage": self._state.stage.copy()}
        for key in EVENT_KEYS:
            info[key] = np.zeros(self.num_envs, bool) if events is None else getattr(events, key)
        info["masked_action"] = masked
        return info
