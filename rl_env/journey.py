"""``ddso/CustomerJourney-v0``: one customer's journey from lead to graduation, as a gymnasium Env.

A thin shell over :mod:`rl_env.dynamics` (N = 1): it draws the episode's customer, checks
actions against the mask, and packs observations, rewards and info.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool, synthetic_pool
from rl_env.dynamics import (
    STAGES,
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
)
from rl_env.observation import WEEKDAYS, make_observation_space, observe, package

EVENT_KEYS = ("contacted", "qualified", "enrolled", "paid", "late_payment", "graduated",
              "dropped", "complained", "churned")
"""Per-step events reported in ``info`` (bools)."""


class CustomerJourneyEnv(gym.Env):
    """One customer, lead to graduation, dropout or churn; the agent picks who-how-what daily.

    **Observation.** ``Box(0, high, (len(OBS_NAMES),), float32)``: the platform's served
    features plus journey state, named in :data:`rl_env.observation.OBS_NAMES`. With
    ``observation_mode="dict"``: ``{"observations": that box, "action_mask": 0/1 floats}``.

    **Actions.** ``Discrete(1 + 4 * (P + 1))`` with P programs in the catalogue: 0 is no
    contact; ``1 + c * (P + 1) + j`` contacts by channel ``c`` (email, sms, call, app_push)
    with no offer (``j = 0``) or program ``j - 1`` (see :func:`rl_env.dynamics.encode_actions`).
    ``action_masks()`` and ``info["action_mask"]`` give the allowed actions: consent,
    eligibility (:mod:`ddso.policy.eligibility`) and weekly contact caps; after enrollment
    only 0. Stepping a masked action raises ValueError (or, with ``masked_action="noop"``,
    does nothing and costs ``reward.masked_action_penalty``).

    **Reward.** ``conversion_value`` on enrollment + ``graduation_bonus`` on graduation +
    ``payment_value`` per program payment - the channel's ``contact_cost`` per contact -
    ``complaint_penalty`` per complaint - ``churn_penalty`` on churn (:class:`RewardConfig`).

    **Episode end.** Terminated on churn, graduation or dropout; truncated when
    ``horizon_days`` pass without enrollment. One step is a day before enrollment and a
    program month after, so an episode lasts at most ``horizon_days`` + 36 steps.

    **Version history.** v0: first version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, config: JourneyConfig | None = None, pool: CustomerPool | None = None,
                 render_mode: str | None = None, **overrides: Any):
        self.config = (config or JourneyConfig()).with_overrides(**overrides)
        self.pool = pool if pool is not None else synthetic_pool(
            self.config.pool_size, self.config.pool_seed, self.config.horizon_days)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}: choose one of "
                             f"{self.metadata['render_modes']} or None")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(n_actions(self.pool.programs.size))
        self.observation_space = make_observation_space(self.config.observation_mode,
                                                        int(self.action_space.n))
        self._state: JourneyState | None = None
        self._mask = np.ones((1, int(self.action_space.n)), bool)
        self._done = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a journey: a customer drawn from the pool, or ``options["customer"]`` (a row)."""
        super().reset(seed=seed)
        chosen = None
        if options and options.get("customer") is not None:
            row = int(options["customer"])
            if not 0 <= row < self.pool.size:
                raise ValueError(f"options['customer']={row}: must be a pool row in "
                                 f"0..{self.pool.size - 1}")
            chosen = np.array([row])
        customers, weekday0 = draw_starts(self.np_random, self.pool.size, 1, chosen)
        self._state = new_journeys(self.pool, customers, weekday0)
        self._mask = action_mask(self.config, self.pool, self._state)
        self._done = False
        return self._observation(), self._info(None, False)

    def step(self, action):
        if self._state is None:
            raise RuntimeError("step() before reset(): call reset() first")
        if self._done:
            raise RuntimeError("the episode has ended (terminated or truncated): call reset()")
        actions, masked = resolve_actions(self.config, self.pool, self._state,
                                          np.array([action]).reshape(1), self._mask)
        self._state, events = step(self.config, self.pool, self._state, actions,
                                   draw_uniforms(self.np_random, 1))
        self._mask = action_mask(self.config, self.pool, self._state)
        terminated, truncated = bool(events.terminated[0]), bool(events.truncated[0])
        self._done = terminated or truncated
        r = float(reward(self.config.reward, events, masked)[0])
        return self._observation(), r, terminated, truncated, self._info(events, bool(masked[0]))

    def action_masks(self) -> np.ndarray:
        """The allowed actions now (bool, one per action)."""
        return self._mask[0].copy()

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._state is None:
            return None
        s = self._state
        weekday = WEEKDAYS[int((s.weekday0[0] + s.day[0]) % 7)]
        return (f"day {int(s.day[0])} ({weekday}) {self.pool.customer_ids[s.customer[0]]} "
                f"{STAGES[int(s.stage[0])]}, contacts in 7 days {int(s.contacts_7d[0])}, "
                f"complaints {int(s.complaints[0])}, payments {int(s.payments[0])}")

    def _observation(self):
        return package(self.config.observation_mode, observe(self.pool, self._state)[0],
                       self._mask[0])

    def _info(self, events: StepEvents | None, masked: bool) -> dict[str, Any]:
        s = self._state
        info: dict[str, Any] = {
            "action_mask": self._mask[0].copy(),
            "customer_id": str(self.pool.customer_ids[s.customer[0]]),
            "stage": STAGES[int(s.stage[0])],
            "day": int(s.day[0]),
        }
        for key in EVENT_KEYS:
            info[key] = bool(getattr(events, key)[0]) if events is not None else False
        info["masked_action"] = masked
        return info
