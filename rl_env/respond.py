"""Simulated customers answering served decisions: the journey dynamics, one contact at a time.

The closed loop needs customers that react to what the platform decides. A
:class:`ServedResponder` takes served actions (customer id, channel, offer id as the decision
API answers them) and draws each customer's response with the environment's own dynamics
(:func:`rl_env.dynamics.step` on a fresh lead: qualification by interest, preferred channel,
offer fit and health; enrolment by the offer's fit, the customer's health and the price), so
the loop's customers behave as the ones the policies are trained and evaluated against. The
customers are those of ``ddso data generate`` with the same size, seed and days
(:func:`rl_env.customers.synthetic_pool`).

:func:`in_session` is the journey configuration of customers who are in session (on the app
or the site) when the decision is asked for, as the real-time decision API is called: they
see the offer at once, so a contact qualifies them far more often than a cold campaign's
(``qualify_intercept`` -2.0 instead of the calibrated -5.8); whether a qualified customer
enrols (offer fit, health, price) is unchanged. Under the propensity x value rule one
contact converts ~2.4 % of them, against ~0.3 % of cold leads: enough outcomes for a
closed-loop test to learn and prove a better policy in tens of thousands of decisions, where
cold leads would need hundreds of thousands (README, the feedback loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ddso.data.population import CHANNELS
from ddso.errors import UserError
from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool
from rl_env.dynamics import draw_uniforms, encode_actions, new_journeys, step

IN_SESSION_QUALIFY_INTERCEPT = -2.0


def in_session(config: JourneyConfig | None = None) -> JourneyConfig:
    """``config`` (default: the calibrated one) for customers in session (module docstring)."""
    config = config or JourneyConfig()
    return config.with_overrides(response=replace(
        config.response, qualify_intercept=IN_SESSION_QUALIFY_INTERCEPT))


class ServedResponder:
    """Draws enrolments for served actions (see the module docstring)."""

    def __init__(self, pool: CustomerPool, config: JourneyConfig | None = None, seed: int = 0):
        self.pool = pool
        self.config = config or JourneyConfig()
        self.rng = np.random.default_rng(seed)
        self._row = {c: i for i, c in enumerate(pool.customer_ids)}
        self._program = {p: i for i, p in enumerate(pool.programs.product_ids)}

    def respond(self, customer_ids: Sequence[str], channels: Sequence[str | None],
                offer_ids: Sequence[str | None]) -> np.ndarray:
        """Whether each served action made its customer enrol (bool array)."""
        try:
            rows = np.array([self._row[c] for c in customer_ids], dtype=np.int64)
        except KeyError as e:
            raise UserError(f"customer {e.args[0]!r} is not in the simulated pool") from None
        channel = np.array([-1 if c is None else CHANNELS.index(c) for c in channels])
        offer = np.array([self._program.get(o, -1) if o is not None else -1 for o in offer_ids])
        state = new_journeys(self.pool, rows, self.rng.integers(7, size=len(rows)))
        action = encode_actions(channel, offer, self.pool.programs.size)
        _, events = step(self.config, self.pool, state, action,
                         draw_uniforms(self.rng, len(rows)))
        return events.enrolled.copy()
