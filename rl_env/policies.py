"""Baseline policies over batches of observations and masks: rules, and two learners.

A policy is called as ``policy(obs, mask, rng) -> actions`` on (N, features) observations
(the ``box`` observation mode), (N, actions) masks and its own generator, so it drives the
single environment (N = 1) and the vector environment alike. Only allowed actions are ever
returned. A policy that learns online also has ``update(obs, actions, rewards)``, which the
evaluator (:mod:`rl_env.evaluate`) calls after every step.

Rules: :class:`BusinessAsUsual` (the legacy campaign), :class:`RandomMasked`,
:class:`NoContact`. Learned: :class:`GreedyPropensity` (greedy on an XGBoost model of
enrolling soon, fitted offline on logged random contacts by :func:`fit_greedy_propensity`)
and :class:`LinUCB` (a contextual bandit that learns while it acts).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from ddso.data.funnel import ideal_kind
from ddso.data.population import CHANNELS
from ddso.data.world import PROGRAM_KINDS
from rl_env.config import JourneyConfig
from rl_env.customers import BAND_HEALTH, CustomerPool, ProgramTable
from rl_env.dynamics import decode_actions, encode_actions
from rl_env.observation import OBS_INDEX
from rl_env.vector import CustomerJourneyVectorEnv


def advised_kind(obs: np.ndarray) -> np.ndarray:
    """The program kind an adviser would pick from what is observed.

    The generator's :func:`~ddso.data.funnel.ideal_kind` rule, with the unobserved latent
    health replaced by the representative health of the customer's assessment band.
    """
    band = obs[:, OBS_INDEX["assessment_band"]].astype(np.int64)
    return ideal_kind(SimpleNamespace(health=BAND_HEALTH[band], age=obs[:, OBS_INDEX["age"]],
                                      income=obs[:, OBS_INDEX["monthly_income"]],
                                      dti=obs[:, OBS_INDEX["debt_to_income"]]))


class BusinessAsUsual:
    """The legacy campaign of the generator (:func:`ddso.data.funnel.draw_funnel`) as a rule.

    Each day a customer is contacted with probability ``offers_per_customer / horizon_days``
    (about that many offers over the window, stopping at enrollment), by the preferred channel
    with probability ``preferred_share`` and otherwise by a random one, falling back to the
    first allowed channel; the offer is a program of the advised kind
    (:func:`advised_kind`) with probability ``match_share``, otherwise of a random kind,
    falling back to any eligible program (and to no offer when none is).
    """

    def __init__(self, programs: ProgramTable, horizon_days: int,
                 offers_per_customer: float = 2.0, preferred_share: float = 0.7,
                 match_share: float = 0.5):
        self.programs = programs
        self.contact_rate = offers_per_customer / horizon_days
        self.preferred_share = preferred_share
        self.match_share = match_share

    def __call__(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        n, p, c = len(obs), self.programs.size, len(CHANNELS)
        actions = np.zeros(n, np.int64)
        channel_ok = mask[:, 1::p + 1]  # (channel, no offer) is allowed iff the channel is
        rows = np.flatnonzero((rng.random(n) < self.contact_rate) & channel_ok.any(1))
        if not len(rows):
            return actions
        k, obs, channel_ok = len(rows), obs[rows], channel_ok[rows]
        first = OBS_INDEX[f"preferred_{CHANNELS[0]}"]
        preferred = obs[:, first:first + c].argmax(1)
        pick = np.where(rng.random(k) < self.preferred_share, preferred, rng.integers(c, size=k))
        channel = np.where(channel_ok[np.arange(k), pick], pick, channel_ok.argmax(1))
        kind = np.where(rng.random(k) < self.match_share, advised_kind(obs),
                        rng.integers(len(PROGRAM_KINDS), size=k))
        by_channel = mask[rows, 1:].reshape(k, c, p + 1)
        eligible = by_channel[np.arange(k), channel, 1:]
        score = rng.random((k, p)) + eligible + (eligible & (self.programs.kind == kind[:, None]))
        offer = np.where(eligible.any(1), score.argmax(1), -1)
        actions[rows] = encode_actions(channel, offer, p)
        return actions


class RandomMasked:
    """Uniform over the allowed actions (with ``contact_share`` < 1: no contact that often)."""

    def __init__(self, contact_share: float = 1.0):
        self.contact_share = contact_share

    def __call__(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        choice = (rng.random(mask.shape) * mask).argmax(1)
        return np.where(rng.random(len(mask)) < self.contact_share, choice, 0)


class NoContact:
    """Never contacts anyone: the baseline of doing nothing."""

    def __call__(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        return np.zeros(len(mask), np.int64)


def action_features(obs: np.ndarray, actions: np.ndarray, programs: ProgramTable) -> np.ndarray:
    """(N, 11) what a contact action is, relative to the customer it is for.

    Columns: channel one-hot (CHANNELS order), the channel is the preferred one, an offer is
    made, the offer's kind (index into PROGRAM_KINDS, -1 for none), it is the advised kind
    (:func:`advised_kind`), log of its monthly payment over 100, its months. No contact
    (action 0) is all zeros but the kind (-1).
    """
    channel, offer = decode_actions(actions, programs.size)
    c = len(CHANNELS)
    out = np.zeros((len(actions), c + 6), np.float32)
    contacted, offered = channel >= 0, offer >= 0
    out[np.flatnonzero(contacted), channel[contacted]] = 1.0
    first = OBS_INDEX[f"preferred_{CHANNELS[0]}"]
    preferred = obs[:, first:first + c]
    out[:, c] = contacted & (preferred[np.arange(len(obs)), np.maximum(channel, 0)] > 0)
    out[:, c + 1] = offered
    o = np.maximum(offer, 0)
    kind = np.where(offered, programs.kind[o], -1)
    out[:, c + 2] = kind
    out[:, c + 3] = offered & (kind == advised_kind(obs))
    out[:, c + 4] = np.where(offered, np.log(programs.monthly_payment[o] / 100.0), 0.0)
    out[:, c + 5] = np.where(offered, programs.months[o], 0.0)
    return out


def _allowed_contacts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, actions) of every allowed contact action, row by row."""
    rows, col = np.nonzero(mask[:, 1:])
    return rows, col + 1


def _best_per_row(n: int, rows: np.ndarray, actions: np.ndarray, score: np.ndarray,
                  threshold: float) -> np.ndarray:
    """Per row, the action of highest score if it beats ``threshold``, else 0 (no contact)."""
    best = np.full(n, -np.inf)
    np.maximum.at(best, rows, score)
    hit = (score == best[rows]) & (score > threshold)
    out = np.zeros(n, np.int64)
    out[rows[hit][::-1]] = actions[hit][::-1]  # the first best action of a row wins the ties
    return out


class GreedyPropensity:
    """Greedy on a propensity model: the allowed contact of highest expected net value.

    For every allowed contact action ``a``: ``score = P(enrols soon | obs, a) * value -
    contact_cost[channel of a]``; the best one is taken if its score beats ``threshold``,
    otherwise no contact. ``booster`` is an XGBoost classifier over the observation and
    :func:`action_features` (see :func:`fit_greedy_propensity`).
    """

    def __init__(self, booster: Any, programs: ProgramTable, value: float,
                 contact_cost: tuple[float, ...], threshold: float = 0.0):
        self.booster = booster
        self.programs = programs
        self.value = value
        self.contact_cost = np.asarray(contact_cost, dtype=np.float64)
        self.threshold = threshold

    def propensity(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """P(enrolled soon) of taking ``actions`` (one per row of ``obs``)."""
        return self.booster.inplace_predict(
            np.hstack([obs, action_features(obs, actions, self.programs)]))

    def __call__(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        rows, actions = _allowed_contacts(mask)
        if not len(rows):
            return np.zeros(len(mask), np.int64)
        channel, _ = decode_actions(actions, self.programs.size)
        score = (self.propensity(obs[rows], actions) * self.value
                 - self.contact_cost[channel])
        return _best_per_row(len(mask), rows, actions, score, self.threshold)


def log_contacts(env: CustomerJourneyVectorEnv, policy: Any, seed: int, window_days: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Run one episode per journey of ``env`` (a box-mode vector env) under ``policy``.

    Returns every contact made: the observation it was made on, the action, whether the
    customer enrolled within ``window_days`` steps from it (that step included), and counts
    of the journeys that ``enrolled`` and ``graduated``.
    """
    n = env.num_envs
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(11,)))
    obs, info = env.reset(seed=seed)
    running = np.ones(n, bool)
    enrolled_at = np.full(n, np.iinfo(np.int64).max)
    graduated = np.zeros(n, bool)
    logged_obs, logged_actions, logged_rows, logged_steps = [], [], [], []
    t = 0
    while running.any():
        actions = policy(obs, info["action_mask"], rng)
        made = np.flatnonzero(running & (actions > 0))
        logged_obs.append(obs[made])
        logged_actions.append(actions[made])
        logged_rows.append(made)
        logged_steps.append(np.full(len(made), t))
        obs, _, terminated, truncated, info = env.step(actions)
        enrolled_at = np.where(info["enrolled"] & running, np.minimum(enrolled_at, t), enrolled_at)
        graduated |= info["graduated"] & running
        running &= ~(terminated | truncated)
        t += 1
    rows, steps = np.concatenate(logged_rows), np.concatenate(logged_steps)
    label = (enrolled_at[rows] >= steps) & (enrolled_at[rows] < steps + window_days)
    counts = {"journeys": n, "enrolled": int((enrolled_at < np.iinfo(np.int64).max).sum()),
              "graduated": int(graduated.sum())}
    return np.concatenate(logged_obs), np.concatenate(logged_actions), label, counts


def fit_greedy_propensity(config: JourneyConfig, pool: CustomerPool, journeys: int = 20_000,
                          seed: int = 0, contact_share: float = 0.1, window_days: int = 7,
                          rounds: int = 80, threshold: float = 0.005) -> GreedyPropensity:
    """Log contacts of a random policy over ``journeys`` journeys, fit XGBoost, go greedy.

    The logging policy contacts on about ``contact_share`` of days with a uniformly random
    allowed action (:class:`RandomMasked`), so every channel and offer is tried in many
    contexts; the label is an enrollment within ``window_days`` of the contact. The value of
    a conversion is the reward's conversion value plus the graduation bonus times the share
    of logged enrollments that graduated. ``threshold`` stands in for what the model does not
    price, complaints and fatigue: on 10,000 held-out customers, 0 contacted ~50 times per
    customer with 60% complaining (mean return -0.038), 0.005 gave +0.049 and 0.01 +0.031.
    """
    import xgboost as xgb

    env = CustomerJourneyVectorEnv(journeys, config.with_overrides(observation_mode="box"),
                                   pool=pool)
    obs, actions, label, counts = log_contacts(env, RandomMasked(contact_share), seed,
                                               window_days)
    env.close()
    x = np.hstack([obs, action_features(obs, actions, pool.programs)])
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 4,
              "eta": 0.1, "min_child_weight": 5.0, "subsample": 0.8,
              "colsample_bytree": 0.8, "reg_lambda": 5.0, "nthread": 1, "seed": seed}
    booster = xgb.train(params, xgb.DMatrix(x, label=label.astype(np.float32)), rounds)
    graduation_share = counts["graduated"] / max(counts["enrolled"], 1)
    value = config.reward.conversion_value + config.reward.graduation_bonus * graduation_share
    return GreedyPropensity(booster, pool.programs, value, config.reward.contact_cost,
                            threshold)


class LinUCB:
    """A contextual bandit over every allowed action: shared-feature LinUCB, learning online.

    Each (customer, action) pair is described by features (:meth:`features`): for no contact
    one indicator, for a contact :func:`action_features` with the kind one-hot, plus the
    customer's state that decides whether contacting pays (qualified, recent contacts,
    days since the last one, weekend, band health, complaints). One ridge regression of the
    step reward on those features is shared by all actions; each step every customer gets
    the allowed action of highest upper confidence bound ``theta . x + alpha *
    sqrt(x' A^-1 x)``. :meth:`update` adds the steps of customers who were being acquired
    (the evaluator calls it after every step).
    """

    def __init__(self, programs: ProgramTable, alpha: float = 0.05, ridge: float = 1.0):
        self.programs = programs
        self.alpha = alpha
        self.dim = self.features(np.zeros((1, len(OBS_INDEX))), np.zeros(1, np.int64)).shape[1]
        self.a_ = ridge * np.eye(self.dim)
        self.b_ = np.zeros(self.dim)
        self.steps_ = 0

    def features(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(N, dim) features of taking ``actions`` (one per row of ``obs``)."""
        n, c, k = len(obs), len(CHANNELS), len(PROGRAM_KINDS)
        act = action_features(obs, actions, self.programs)
        contact = (actions > 0).astype(np.float64)
        kind = act[:, c + 2].astype(np.int64)
        kinds = np.zeros((n, k))
        kinds[np.flatnonzero(kind >= 0), kind[kind >= 0]] = 1.0
        band = obs[:, OBS_INDEX["assessment_band"]].astype(np.int64)
        context = np.column_stack([
            obs[:, OBS_INDEX["stage_qualified"]],
            obs[:, OBS_INDEX["contacts_7d"]] / 4.0,
            np.minimum(obs[:, OBS_INDEX["days_since_last_contact"]], 90.0) / 90.0,
            np.minimum(obs[:, OBS_INDEX["complaints_365d"]], 3.0),
            obs[:, OBS_INDEX["weekday_sat"]] + obs[:, OBS_INDEX["weekday_sun"]],
            BAND_HEALTH[band],
        ])
        return np.column_stack([1.0 - contact, contact, act[:, :c + 2], kinds,
                                act[:, c + 3:c + 5], context * contact[:, None]])

    def __call__(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        rows, actions = np.nonzero(mask)
        x = self.features(obs[rows], actions)
        a_inv = np.linalg.inv(self.a_)
        theta = a_inv @ self.b_
        bonus = np.sqrt(np.maximum(((x @ a_inv) * x).sum(1), 0.0))
        score = x @ theta + self.alpha * bonus
        return _best_per_row(len(mask), rows, actions, score, -np.inf)

    def update(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> LinUCB:
        """Learn from one step: the observations acted on, the actions and their rewards."""
        acquiring = (obs[:, OBS_INDEX["stage_lead"]] + obs[:, OBS_INDEX["stage_contacted"]]
                     + obs[:, OBS_INDEX["stage_qualified"]]) > 0
        x = self.features(obs[acquiring], np.asarray(actions)[acquiring])
        self.a_ += x.T @ x
        self.b_ += x.T @ np.asarray(rewards, dtype=np.float64)[acquiring]
        self.steps_ += 1
        return self
