"""What the agent sees: the platform's served features of the customer, plus journey state.

The observation is one float32 vector, named column by column in :data:`OBS_NAMES`:

* :data:`SERVED`: features of :data:`ddso.features.sets.CUSTOMER_FEATURES`, same names, same
  meaning. The ten financial features are computed once per customer by the platform's own
  :func:`~ddso.features.financial.financial_features`; the contact and complaint features are
  kept up to date by the journey (``contacts_7d``, ``contacts_30d``, ``complaints_365d``,
  ``open_complaint``, ``offers_shown_90d``, ``offers_accepted_365d``,
  ``days_since_last_contact``, ``tenure_days``). The shopping features (recency, frequency,
  monetary, views, sessions...) are not simulated and not observed.
* The customer record: ``assessment_band`` (0 = A .. 4 = E), ``age``, preferred channel
  one-hot (``preferred_<channel>``) and consent flags (``consent_<channel>``, as withdrawn
  by complaints).
* :data:`JOURNEY`: stage one-hot, days since the episode started, weekday one-hot, days since the
  last contact and contacts this calendar week per channel, and the enrolled program's
  length, monthly payment, payments made and late payments (0 before enrollment).

Latent drivers (health, interest, price sensitivity, fatigue, the ideal program kind) are
never observed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from gymnasium import spaces

from ddso.data.population import CHANNELS
from ddso.features.behaviour import NEVER_DAYS
from ddso.features.financial import FEATURE_COLUMNS as FINANCIAL_FEATURES
from rl_env.customers import CustomerPool
from rl_env.dynamics import STAGES, JourneyState

JOURNEY_SERVED = ("contacts_7d", "contacts_30d", "complaints_365d", "open_complaint",
                  "offers_shown_90d", "offers_accepted_365d", "days_since_last_contact",
                  "tenure_days")
SERVED: tuple[str, ...] = (*FINANCIAL_FEATURES, *JOURNEY_SERVED)
"""Names from :data:`ddso.features.sets.CUSTOMER_FEATURES`, with the platform's meaning."""
_STATIC: tuple[str, ...] = (*FINANCIAL_FEATURES, "assessment_band", "age",
                            *(f"preferred_{c}" for c in CHANNELS))
CONSENT: tuple[str, ...] = tuple(f"consent_{c}" for c in CHANNELS)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
JOURNEY: tuple[str, ...] = (
    *(f"stage_{s}" for s in STAGES), "day", *(f"weekday_{d}" for d in WEEKDAYS),
    *(f"days_since_{c}" for c in CHANNELS), *(f"week_contacts_{c}" for c in CHANNELS),
    "program_months", "program_monthly_payment", "program_payments", "program_late_payments")
OBS_NAMES: tuple[str, ...] = (*_STATIC, *CONSENT, *JOURNEY_SERVED, *JOURNEY)
"""Column names of the observation vector (the columns fixed per customer first)."""
OBS_INDEX: dict[str, int] = {name: i for i, name in enumerate(OBS_NAMES)}
_OPEN_COMPLAINT_DAYS = 30
_ONE_HOT_PREFIXES = ("preferred_", "consent_", "stage_", "weekday_")
_UNBOUNDED = 1e9


def observation_space() -> spaces.Box:
    """Non-negative features; flags and one-hots at most 1, the band at most 4."""
    high = np.full(len(OBS_NAMES), _UNBOUNDED, np.float32)
    for i, name in enumerate(OBS_NAMES):
        if name.startswith(_ONE_HOT_PREFIXES) or name == "open_complaint":
            high[i] = 1.0
    high[OBS_INDEX["assessment_band"]] = 4.0
    high[OBS_INDEX["days_since_last_contact"]] = NEVER_DAYS
    return spaces.Box(0.0, high, dtype=np.float32)


@lru_cache(maxsize=8)
def _static_block(pool: CustomerPool) -> np.ndarray:
    """(customers, static columns) float32: the observation columns fixed per customer."""
    block = np.zeros((pool.size, len(_STATIC)), np.float32)
    k = len(FINANCIAL_FEATURES)
    block[:, :k] = np.clip(np.nan_to_num(pool.financial), 0.0, _UNBOUNDED)
    block[:, k] = pool.band
    block[:, k + 1] = pool.age
    known = pool.preferred >= 0
    block[np.flatnonzero(known), k + 2 + pool.preferred[known]] = 1.0
    return block


def observe(pool: CustomerPool, state: JourneyState) -> np.ndarray:
    """(N, len(OBS_NAMES)) float32 observations of the journeys in ``state``."""
    n, c, width = len(state.stage), len(CHANNELS), len(OBS_NAMES)
    obs = np.empty((n, width), np.float32)
    obs[:, :len(_STATIC)] = _static_block(pool).take(state.customer, axis=0)
    obs[:, len(_STATIC):] = 0.0
    col = OBS_INDEX
    for first, block in (("consent", state.consent), ("days_since", state.since_contact),
                         ("week_contacts", state.week_contacts)):
        i = col[f"{first}_{CHANNELS[0]}"]
        obs[:, i:i + c] = block
    for name, value in (
            ("contacts_7d", state.contacts_7d), ("contacts_30d", state.contacts_30d),
            ("complaints_365d", state.complaints),
            ("open_complaint", state.day - state.last_complaint_day <= _OPEN_COMPLAINT_DAYS),
            ("offers_shown_90d", state.offers_90d), ("offers_accepted_365d", state.program >= 0),
            ("days_since_last_contact", state.since_any_contact),
            ("tenure_days", pool.tenure_days.take(state.customer) + state.day),
            ("day", state.day), ("program_payments", state.payments),
            ("program_late_payments", state.late_payments)):
        obs[:, col[name]] = value
    # One-hots through the flat view: one scattered write per row.
    flat, row_start = obs.reshape(-1), np.arange(n) * width
    flat[row_start + col[f"stage_{STAGES[0]}"] + state.stage] = 1.0
    flat[row_start + col[f"weekday_{WEEKDAYS[0]}"] + (state.weekday0 + state.day) % 7] = 1.0
    enrolled = np.flatnonzero(state.program >= 0)
    if len(enrolled):
        program = state.program[enrolled]
        obs[enrolled, col["program_months"]] = pool.programs.months[program]
        obs[enrolled, col["program_monthly_payment"]] = pool.programs.monthly_payment[program]
    return obs


def make_observation_space(mode: str, n_actions: int) -> spaces.Space:
    """The observation space of one journey: the Box, or RLlib's action-masking Dict."""
    if mode == "box":
        return observation_space()
    return spaces.Dict({"observations": observation_space(),
                        "action_mask": spaces.Box(0.0, 1.0, (n_actions,), np.float32)})


def package(mode: str, obs: np.ndarray, mask: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    """Observations (and masks) of one journey or a batch, in the layout of ``mode``."""
    if mode == "box":
        return obs
    return {"observations": obs, "action_mask": mask.astype(np.float32)}
