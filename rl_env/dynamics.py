"""The customer-journey dynamics: pure functions of (config, pool, state, actions, randomness).

Every function here works on N customers at once (the single environment is N = 1) and,
but for :func:`write_rows`, returns new arrays without touching its inputs. Randomness is
drawn by :func:`draw_starts` (a new episode: customer and start weekday) and
:func:`draw_uniforms` (a fixed number of uniforms per journey per step) from the generator
the caller passes, so a seed fixes a rollout and a batch of one journey replays the single
environment exactly.

Time. While a customer is being acquired (stage lead, contacted or qualified) one step is
one day, up to ``horizon_days``. From enrollment on, one step is one program month
(:data:`MONTH_DAYS` days) in which the agent can only choose "no contact": each month the
customer drops out with a constant hazard, set so that the chance of completing all
``months`` payments is the graduation probability, or pays (late with some probability);
after the last payment they graduate.

Per acquisition day, a contact (channel c, offer o or none) qualifies the lead with
``sigmoid(qualify_intercept + interest + preferred channel + offer fit + health + warm lead
- fatigue + weekend effect of c)``; an offer made to a qualified lead is accepted, and the
customer enrolls, with ``sigmoid(accept_intercept + interest + fit + health - price
sensitivity x log(monthly payment / reference))`` (the mask only allows eligible offers).
A contact provokes a complaint with a probability rising with fatigue (and, by default,
withdraws consent to its channel); complaints also arrive unprovoked at the segment's rate.
Existing customers churn with the generator's probability spread over
``churn_window_days``, raised per complaint; enrolled customers do not churn.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from ddso.data.population import CHANNELS, sigmoid
from ddso.features.behaviour import NEVER_DAYS
from ddso.schemas.base import FunnelStage
from rl_env.config import JourneyConfig, ResponseModel, RewardConfig
from rl_env.customers import CustomerPool

STAGES: tuple[str, ...] = tuple(s.value for s in FunnelStage)
"""Journey stages, in the order of the ``stage`` array (FunnelStage order)."""
LEAD, CONTACTED, QUALIFIED, ENROLLED, ACTIVE, GRADUATED, DROPPED, CHURNED = range(len(STAGES))
MONTH_DAYS = 30
HISTORY_DAYS = 90
"""Days of contact history kept (the longest served window, ``offers_shown_90d``)."""
N_UNIFORMS = 7
"""Uniforms drawn per stepped customer per step."""
_Q, _ACCEPT, _COMPLAINT, _PROVOKED, _CHURN, _DROP, _LATE = range(N_UNIFORMS)
_CONTACT_BIT, _OFFER_BIT = np.uint8(1), np.uint8(2)
_NO_COMPLAINT = -(10**6)


@dataclass(frozen=True)
class JourneyState:
    """The journeys of N customers; every field is an array with N rows."""

    customer: np.ndarray
    """Row in the customer pool."""
    day: np.ndarray
    """Days since the episode started."""
    weekday0: np.ndarray
    """Weekday of day 0 (0 = Monday)."""
    stage: np.ndarray
    """Index into :data:`STAGES`."""
    consent: np.ndarray
    """(N, channels): consent as it stands (a complaint can withdraw it)."""
    fatigue: np.ndarray
    """Contact pressure: +1 per contact, decaying by ``fatigue_decay`` per day."""
    since_contact: np.ndarray
    """(N, channels): days since the last contact on each channel (NEVER_DAYS if none)."""
    since_any_contact: np.ndarray
    """Days since the last contact on any channel (NEVER_DAYS if none)."""
    week_contacts: np.ndarray
    """(N, channels): contacts in the current calendar week."""
    week_total: np.ndarray
    """Contacts in the current calendar week, over all channels."""
    history: np.ndarray
    """(N, HISTORY_DAYS): day ``d`` at column ``d % HISTORY_DAYS``; bit 1 contact, bit 2 offer."""
    contacts_7d: np.ndarray
    contacts_30d: np.ndarray
    offers_90d: np.ndarray
    complaints: np.ndarray
    last_complaint_day: np.ndarray
    program: np.ndarray
    """Program (column of the program table) enrolled in, -1 before enrollment."""
    fit: np.ndarray
    """Whether the enrolled program is of the customer's ideal kind."""
    enrolled_day: np.ndarray
    payments: np.ndarray
    late_payments: np.ndarray


@dataclass(frozen=True)
class StepEvents:
    """What happened to each customer in one step (bool arrays, plus the channel used)."""

    channel: np.ndarray
    """Channel contacted, -1 for none."""
    contacted: np.ndarray
    offered: np.ndarray
    qualified: np.ndarray
    enrolled: np.ndarray
    paid: np.ndarray
    late_payment: np.ndarray
    graduated: np.ndarray
    dropped: np.ndarray
    complained: np.ndarray
    churned: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


def n_actions(n_programs: int) -> int:
    """Size of the action space: no contact, or a (channel, offer or none) pair."""
    return 1 + len(CHANNELS) * (n_programs + 1)


def decode_actions(action: np.ndarray, n_programs: int) -> tuple[np.ndarray, np.ndarray]:
    """Actions -> (channel, offer), -1 meaning none. Action ``1 + c*(P+1) + (o+1)``."""
    a = np.asarray(action, dtype=np.int64) - 1
    channel = np.where(a >= 0, a // (n_programs + 1), -1)
    offer = np.where(a >= 0, a % (n_programs + 1) - 1, -1)
    return channel, offer


def encode_actions(channel: np.ndarray, offer: np.ndarray, n_programs: int) -> np.ndarray:
    """(channel, offer) -> actions; a channel of -1 is no contact whatever the offer."""
    channel = np.asarray(channel, dtype=np.int64)
    return np.where(channel >= 0, 1 + channel * (n_programs + 1) + np.asarray(offer) + 1, 0)


def draw_starts(rng: np.random.Generator, pool_size: int, n: int,
                customers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows (uniform unless given) and start weekdays of ``n`` new episodes."""
    if customers is None:
        customers = rng.integers(pool_size, size=n)
    return np.asarray(customers, dtype=np.int64), rng.integers(7, size=n)


def new_journeys(pool: CustomerPool, customers: np.ndarray, weekday0: np.ndarray
                 ) -> JourneyState:
    """The state of fresh leads: day 0, no contact yet (every field its own new array)."""
    n, c = len(customers), len(CHANNELS)

    def zeros() -> np.ndarray:
        return np.zeros(n, np.int64)

    return JourneyState(
        customer=np.array(customers, dtype=np.int64), day=zeros(),
        weekday0=np.array(weekday0, dtype=np.int64), stage=np.full(n, LEAD, np.int64),
        consent=pool.consent[customers], fatigue=np.zeros(n),
        since_contact=np.full((n, c), NEVER_DAYS), since_any_contact=np.full(n, NEVER_DAYS),
        week_contacts=np.zeros((n, c), np.int64), week_total=zeros(),
        history=np.zeros((n, HISTORY_DAYS), np.uint8), contacts_7d=zeros(),
        contacts_30d=zeros(), offers_90d=zeros(), complaints=zeros(),
        last_complaint_day=np.full(n, _NO_COMPLAINT), program=np.full(n, -1),
        fit=np.zeros(n, bool), enrolled_day=np.full(n, -1), payments=zeros(),
        late_payments=zeros())


def write_rows(state: JourneyState, rows: np.ndarray, part: JourneyState) -> None:
    """Overwrite the journeys at ``rows`` with ``part``, in place (on a state you own)."""
    for f in fields(state):
        getattr(state, f.name)[rows] = getattr(part, f.name)


def acquiring(state: JourneyState) -> np.ndarray:
    """Customers the agent may still contact: not enrolled, not gone."""
    return state.stage <= QUALIFIED


def channel_allowed(config: JourneyConfig, state: JourneyState) -> np.ndarray:
    """(N, channels): consent given, weekly caps not reached, customer still being acquired."""
    caps = config.contact_policy
    return (state.consent & (state.week_contacts < np.asarray(caps.max_per_week))
            & ((state.week_total < caps.max_total_per_week) & acquiring(state))[:, None])


def action_mask(config: JourneyConfig, pool: CustomerPool, state: JourneyState) -> np.ndarray:
    """(N, actions) bool: which actions are allowed (consent, eligibility, contact caps).

    "No contact" is always allowed; a contact needs an allowed channel
    (:func:`channel_allowed`) and an offer that is none or a program the customer is
    eligible for.
    """
    n, p = len(state.stage), pool.programs.size
    offers = np.ones((n, p + 1), bool)
    offers[:, 1:] = pool.eligible.take(state.customer, axis=0)
    channels = channel_allowed(config, state)
    mask = np.empty((n, n_actions(p)), bool)
    mask[:, 0] = True
    for c in range(len(CHANNELS)):
        first = 1 + c * (p + 1)
        np.logical_and(offers, channels[:, c:c + 1], out=mask[:, first:first + p + 1])
    return mask


def why_masked(config: JourneyConfig, pool: CustomerPool, state: JourneyState, row: int,
               action: int) -> str:
    """Why ``action`` is not allowed for journey ``row`` (assumes it is masked)."""
    p = pool.programs.size
    channel, offer = (int(x[0]) for x in decode_actions(np.array([action]), p))
    if channel < 0 or not 0 <= action < n_actions(p):
        return f"action {action} is outside 0..{n_actions(p) - 1}"
    name = CHANNELS[channel]
    if not acquiring(state)[row]:
        return f"the customer is {STAGES[state.stage[row]]}: only action 0 (no contact) is allowed"
    if not state.consent[row, channel]:
        return f"no consent to contact by {name}"
    caps = config.contact_policy
    if state.week_contacts[row, channel] >= caps.max_per_week[channel]:
        return f"{name} cap of {caps.max_per_week[channel]} contacts this week reached"
    if state.week_total[row] >= caps.max_total_per_week:
        return f"cap of {caps.max_total_per_week} contacts this week reached"
    return (f"not eligible for program {pool.programs.product_ids[offer]} "
            "(ddso.policy.eligibility rules)")


def resolve_actions(config: JourneyConfig, pool: CustomerPool, state: JourneyState,
                    action: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check actions against the mask: (actions to step, which were masked).

    With ``masked_action="raise"`` a masked action raises ValueError naming the journey, the
    action and the rule it breaks; with ``"noop"`` it becomes 0 (no contact).
    """
    action = np.asarray(action, dtype=np.int64)
    inside = (action >= 0) & (action < mask.shape[1])
    masked = ~inside | ~mask[np.arange(len(action)), np.where(inside, action, 0)]
    if not masked.any():
        return action, masked
    if config.masked_action == "raise" or not inside.all():
        row = int(np.flatnonzero(masked)[0])
        where = f"journey {row}: " if len(action) > 1 else ""
        raise ValueError(
            f"{where}action {int(action[row])} is masked: "
            f"{why_masked(config, pool, state, row, int(action[row]))}; choose an action "
            "where info['action_mask'] (or action_masks()) is True, or build the env with "
            "masked_action='noop'")
    return np.where(masked, 0, action), masked


def _window_counts(history: np.ndarray, bit: np.uint8, last_day: np.ndarray, day: np.ndarray,
                   window: int) -> np.ndarray:
    """Days in ``[day - window, day)`` with ``bit`` set, from history written up to ``last_day``."""
    slots = np.arange(HISTORY_DAYS)
    slot_day = last_day[:, None] - (last_day[:, None] - slots[None, :]) % HISTORY_DAYS
    inside = (slot_day >= np.maximum(day - window, 0)[:, None]) & (slot_day < day[:, None])
    return (((history & bit) > 0) & inside).sum(1)


def draw_uniforms(rng: np.random.Generator, n: int) -> np.ndarray:
    """The randomness of one step of ``n`` journeys: (n, N_UNIFORMS) uniforms on [0, 1)."""
    return rng.random((n, N_UNIFORMS))


def _respond(m: ResponseModel, pool: CustomerPool, state: JourneyState, rows: np.ndarray,
             channel: np.ndarray, offer: np.ndarray, u: np.ndarray
             ) -> tuple[np.ndarray, ...]:
    """(qualified, enrolled, provoked a complaint, offer fit) of the contacted ``rows``."""
    cust = state.customer[rows]
    progs = pool.programs
    interest, health = pool.interest[cust], pool.health[cust]
    ch, off = channel[rows], offer[rows]
    offered, off = off >= 0, np.maximum(off, 0)
    fit = offered & (progs.kind[off] == pool.ideal_kind[cust])
    fatigue = state.fatigue[rows]
    weekend = (state.weekday0[rows] + state.day[rows]) % 7 >= 5
    qualify = (m.qualify_intercept + m.qualify_interest * interest
               + m.qualify_preferred_channel * (ch == pool.preferred[cust])
               + m.qualify_fit * fit + m.qualify_health * health
               + m.qualify_warm * (state.stage[rows] == QUALIFIED) - m.fatigue_weight * fatigue
               + np.asarray(m.weekend_effect)[ch] * weekend)
    qualified = u[rows, _Q] < sigmoid(qualify)
    accept = (m.accept_intercept + m.accept_interest * interest + m.accept_fit * fit
              + m.accept_health * health - m.price_weight * pool.price_sensitivity[cust]
              * np.log(progs.monthly_payment[off] / m.reference_monthly_payment))
    enrolled = qualified & offered & (u[rows, _ACCEPT] < sigmoid(accept))
    provoked = u[rows, _PROVOKED] < sigmoid(m.complaint_intercept + m.complaint_fatigue * fatigue)
    return qualified, enrolled, provoked, fit


def _program_month(m: ResponseModel, pool: CustomerPool, state: JourneyState, rows: np.ndarray,
                   u: np.ndarray) -> tuple[np.ndarray, ...]:
    """(dropped, paid, paid late, graduated) of the enrolled ``rows`` over one month.

    The monthly dropout hazard is constant and set so that paying all ``months`` payments
    has the graduation probability.
    """
    cust = state.customer[rows]
    health = pool.health[cust]
    months = pool.programs.months[state.program[rows]]
    graduate = sigmoid(m.graduate_intercept + m.graduate_health * health
                       + m.graduate_fit * state.fit[rows]
                       + m.graduate_interest * pool.interest[cust])
    dropped = u[rows, _DROP] < 1.0 - graduate ** (1.0 / months)
    paid = ~dropped
    late = paid & (u[rows, _LATE] < sigmoid(m.late_payment_intercept
                                            + m.late_payment_health * health))
    return dropped, paid, late, paid & (state.payments[rows] + 1 >= months)


def step(config: JourneyConfig, pool: CustomerPool, state: JourneyState, action: np.ndarray,
         uniforms: np.ndarray) -> tuple[JourneyState, StepEvents]:
    """Advance every journey one step under ``action`` (assumed allowed by the mask).

    All randomness comes from ``uniforms`` (:func:`draw_uniforms`). Journeys that have
    already ended are left as they are.
    """
    m = config.response
    n = len(state.stage)
    u = uniforms
    cust = state.customer
    channel, offer = decode_actions(action, pool.programs.size)
    buying = acquiring(state)
    in_program = (state.stage == ENROLLED) | (state.stage == ACTIVE)

    # Acquisition: response of the contacted, complaints and churn of everyone.
    contacted = buying & (channel >= 0)
    offered = contacted & (offer >= 0)
    qualified, enrolled, provoked, fit = (np.zeros(n, bool) for _ in range(4))
    rows = np.flatnonzero(contacted)
    if len(rows):
        qualified[rows], enrolled[rows], provoked[rows], fit[rows] = _respond(
            m, pool, state, rows, channel, offer, u)
    complained = buying & (provoked | (u[:, _COMPLAINT] < pool.complaint_rate[cust]))
    complaints = state.complaints + complained
    churn = sigmoid(pool.churn_logit[cust] + m.churn_per_complaint * np.minimum(complaints, 3))
    churned = buying & ~enrolled & (u[:, _CHURN] < churn / m.churn_window_days)

    # Programs: one month per step.
    dropped, paid, late, graduated = (np.zeros(n, bool) for _ in range(4))
    prog_rows = np.flatnonzero(in_program)
    if len(prog_rows):
        dropped[prog_rows], paid[prog_rows], late[prog_rows], graduated[prog_rows] = (
            _program_month(m, pool, state, prog_rows, u))
    payments = state.payments + paid

    stage = np.where(contacted & (state.stage == LEAD), CONTACTED, state.stage)
    stage = np.where(qualified, QUALIFIED, stage)
    stage = np.where(enrolled, ENROLLED, stage)
    stage = np.where(churned, CHURNED, stage)
    stage = np.where(paid, ACTIVE, stage)
    stage = np.where(graduated, GRADUATED, stage)
    stage = np.where(dropped, DROPPED, stage)

    advance = np.where(buying, 1, np.where(in_program, MONTH_DAYS, 0))
    day = state.day + advance
    onehot = contacted[:, None] & (np.arange(len(CHANNELS))[None, :] == channel[:, None])
    consent = state.consent & ~(onehot & (provoked & m.opt_out_on_complaint)[:, None])
    new_week = (state.weekday0 + state.day) % 7 + advance >= 7
    week_contacts = np.where(new_week[:, None], 0, state.week_contacts + onehot)
    since = np.minimum(np.where(onehot, 0.0, state.since_contact) + advance[:, None], NEVER_DAYS)
    since_any = np.minimum(np.where(contacted, 0.0, state.since_any_contact) + advance,
                           NEVER_DAYS)

    # Rolling served counts: incremental for a day's step, recounted after a program month.
    history = state.history.copy()
    daily = np.flatnonzero(buying)
    flat, row_start = history.reshape(-1), daily * HISTORY_DAYS  # flat gathers are faster

    def left(lag: int, bit: np.uint8) -> np.ndarray:
        """Whether the day ``lag`` days back, now leaving the window, had ``bit`` set."""
        gone = state.day[daily] - lag
        return ((gone >= 0) & ((flat[row_start + gone % HISTORY_DAYS] & bit) > 0)).astype(
            np.int64)

    c7, c30, o90 = state.contacts_7d.copy(), state.contacts_30d.copy(), state.offers_90d.copy()
    c7[daily] += contacted[daily] - left(7, _CONTACT_BIT)
    c30[daily] += contacted[daily] - left(30, _CONTACT_BIT)
    o90[daily] += offered[daily] - left(HISTORY_DAYS, _OFFER_BIT)
    flat[row_start + state.day[daily] % HISTORY_DAYS] = (contacted[daily] * _CONTACT_BIT
                                                         | offered[daily] * _OFFER_BIT)
    if len(prog_rows):
        c7[prog_rows] = c30[prog_rows] = 0  # a month without contacts has passed
        o90[prog_rows] = _window_counts(history[prog_rows], _OFFER_BIT,
                                        state.enrolled_day[prog_rows], day[prog_rows],
                                        HISTORY_DAYS)

    terminated = churned | graduated | dropped
    new = replace(
        state, customer=cust.copy(), weekday0=state.weekday0.copy(), day=day, stage=stage,
        consent=consent,
        fatigue=state.fatigue * m.fatigue_decay ** advance + contacted,
        since_contact=since, since_any_contact=since_any, week_contacts=week_contacts,
        week_total=np.where(new_week, 0, state.week_total + contacted), history=history,
        contacts_7d=c7, contacts_30d=c30, offers_90d=o90, complaints=complaints,
        last_complaint_day=np.where(complained, state.day, state.last_complaint_day),
        program=np.where(enrolled, offer, state.program), fit=np.where(enrolled, fit, state.fit),
        enrolled_day=np.where(enrolled, state.day, state.enrolled_day), payments=payments,
        late_payments=state.late_payments + late)
    events = StepEvents(
        channel=np.where(contacted, channel, -1), contacted=contacted, offered=offered,
        qualified=qualified, enrolled=enrolled, paid=paid, late_payment=late,
        graduated=graduated, dropped=dropped, complained=complained, churned=churned,
        terminated=terminated,
        truncated=buying & ~terminated & ~enrolled & (day >= config.horizon_days))
    return new, events


def reward(weights: RewardConfig, events: StepEvents, masked: np.ndarray | None = None
           ) -> np.ndarray:
    """Per-journey reward of one step; ``masked`` marks masked actions replaced by no contact."""
    cost = np.asarray(weights.contact_cost)[np.maximum(events.channel, 0)] * events.contacted
    r = (weights.conversion_value * events.enrolled + weights.graduation_bonus * events.graduated
         + weights.payment_value * events.paid - cost
         - weights.complaint_penalty * events.complained - weights.churn_penalty * events.churned)
    if masked is not None:
        r = r - weights.masked_action_penalty * masked
    return r
