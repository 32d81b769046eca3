"""Rule policies over batches of observations and masks: baselines and test drivers.

A policy is called as ``policy(obs, mask, rng) -> actions`` on (N, features) observations
(the ``box`` observation mode), (N, actions) masks and its own generator, so it drives the
single environment (N = 1) and the vector environment alike. Only allowed actions are ever
returned.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ddso.data.funnel import ideal_kind
from ddso.data.population import CHANNELS
from ddso.data.world import PROGRAM_KINDS
from rl_env.customers import BAND_HEALTH, ProgramTable
from rl_env.dynamics import encode_actions
from rl_env.observation import OBS_INDEX


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
