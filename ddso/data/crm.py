"""CRM: complaints, churn, inbound service calls, the interactions table and social signals.

Churn is drawn first because it bounds everything else a customer does: its hazard rises
with the segment's, with complaints and with low activity, and a complaint-driven churn
follows its complaint by days to weeks, so that complaints are a visible precursor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ddso.data.event_table import AGENTS, OUTCOMES, REASONS, SOURCES, EventBuilder, chunk_ids
from ddso.data.population import (
    CHURN_LOGIT,
    COMPLAINTS_PER_YEAR,
    INBOUND_CALLS_PER_YEAR,
    Population,
    sigmoid,
)
from ddso.data.tables import build_table
from ddso.data.world import DAY_US

NEVER = np.iinfo(np.int64).max
_CRM_KINDS = ("call", "email", "meeting", "complaint")
_EVENT_OF_KIND = {0: "crm_call", 1: "crm_email", 2: "crm_meeting"}
_CRM = SOURCES.index("crm")


@dataclass
class Churn:
    """When (``NEVER`` if not in the window) and why each customer churns."""

    time_us: np.ndarray
    reason: np.ndarray  # index into event_table.REASONS
    probability: np.ndarray


@dataclass
class CrmLog:
    """CRM interactions of a chunk, added to the event stream and kept for the table."""

    events: EventBuilder
    _rows: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    _next: int = 0

    def add(self, kind: int, cust: np.ndarray, t: np.ndarray, outcome: np.ndarray,
            duration_s: np.ndarray, rng: np.random.Generator) -> None:
        """Add interactions of one kind (0 call, 1 email, 2 meeting)."""
        num = self._next + np.arange(len(cust))
        self._next += len(cust)
        agent = np.where(kind == 1, -1, rng.integers(0, len(AGENTS), len(cust)))
        extra = {} if kind == 1 else {"duration_s": duration_s}
        self.events.add(_EVENT_OF_KIND[kind], cust, t, interaction_id=num, agent_id=agent,
                        outcome=outcome, source=np.full(len(cust), _CRM), **extra)
        self._rows.append((num, np.full(len(cust), kind), cust, t, agent, outcome, duration_s))

    def table(self, ids: pa.Array, complaints: tuple[np.ndarray, np.ndarray]) -> pa.Table:
        """The crm_interactions table; complaints keep their complaint id as interaction id."""
        num, kind, cust, t, agent, outcome, dur = (np.concatenate(c) for c in zip(
            *self._rows, strict=True)) if self._rows else [np.zeros(0, np.int64)] * 7
        c_cust, c_t = complaints
        ids_all = pa.concat_arrays([chunk_ids("i", self.events.chunk, num.astype(np.int64)),
                                    chunk_ids("q", self.events.chunk, np.arange(len(c_cust)))])
        agent_all = np.r_[agent, np.full(len(c_cust), -1)].astype(np.int64)
        return build_table("crm_interactions", {
            "interaction_id": ids_all,
            "customer_id": ids.take(pa.array(np.r_[cust, c_cust].astype(np.int64))),
            "occurred_at": np.r_[t, c_t].astype(np.int64),
            "kind": pa.array(_CRM_KINDS).take(pa.array(np.r_[kind, np.full(len(c_cust), 3)]
                                                       .astype(np.int64))),
            "agent_id": pa.array(AGENTS).take(pa.array(agent_all, mask=agent_all < 0)),
            "outcome": pa.array(OUTCOMES).take(pa.array(np.r_[
                outcome, np.full(len(c_cust), OUTCOMES.index("negative"))].astype(np.int64))),
            "duration_s": np.r_[dur, np.zeros(len(c_cust))].astype(float),
        })


def draw_churn(rng: np.random.Generator, pop: Population, active_from: np.ndarray, end_us: int,
               start_us: int, events: EventBuilder) -> tuple[Churn, tuple[np.ndarray, ...]]:
    """Add complaints; draw churn. Returns the churn and the kept complaints (cust, time)."""
    n = len(pop.segment)
    years = (end_us - active_from) / (365 * DAY_US)
    rate = COMPLAINTS_PER_YEAR[pop.segment] * (1 + 1.5 * (pop.health < -1)) * years
    n_c = rng.poisson(rate)
    c_cust = np.repeat(np.arange(n), n_c)
    c_t = active_from[c_cust] + (rng.random(len(c_cust)) * (end_us - active_from[c_cust])
                                 ).astype(np.int64)
    order = np.lexsort((c_t, c_cust))
    c_cust, c_t = c_cust[order], c_t[order]
    first_c = np.full(n, NEVER)
    np.minimum.at(first_c, c_cust, c_t)
    existing = pop.created_us < start_us
    logit = (CHURN_LOGIT[pop.segment] + 1.2 * np.minimum(n_c, 3) - 0.5 * np.log(pop.activity)
             - 0.3 * pop.health)
    p = sigmoid(logit) * existing
    churns = rng.random(n) < p
    by_complaint = churns & (first_c < NEVER) & (rng.random(n) < 0.7)
    t = np.where(by_complaint, first_c + (rng.uniform(7, 60, n) * DAY_US).astype(np.int64),
                 start_us + (rng.uniform(30, 400, n) * DAY_US).astype(np.int64))
    t = np.where(churns & (t < end_us), t, NEVER)
    reason = np.where(by_complaint, REASONS.index("complaint"),
                      np.where(pop.segment == 4, REASONS.index("inactive"),
                               rng.choice([4, 6, 3], n, p=[0.3, 0.5, 0.2])))
    keep = c_t < t[c_cust]
    c_cust, c_t = c_cust[keep], c_t[keep]
    cat = rng.choice(5, len(c_cust), p=[0.35, 0.3, 0.2, 0.05, 0.1])
    sev = np.minimum(1 + rng.poisson(1.2 + 0.8 * (pop.health[c_cust] < -1)), 5)
    events.add("complaint", c_cust, c_t, complaint_id=np.arange(len(c_cust)), category=cat,
               severity=sev, source=np.full(len(c_cust), _CRM))
    return Churn(t, reason, p), (c_cust, c_t)


def finish_churn(churn: Churn, events: EventBuilder) -> None:
    """Add the churn events (after the funnel may have cancelled some)."""
    who = np.flatnonzero(churn.time_us < NEVER)
    events.add("churn", who, churn.time_us[who], reason=churn.reason[who],
               source=np.full(len(who), SOURCES.index("core_banking")))


def draw_inbound(rng: np.random.Generator, pop: Population, active_from: np.ndarray,
                 active_to: np.ndarray, log: CrmLog) -> None:
    """Service calls the customer makes; never a sales outcome, so never 'positive'."""
    years = np.maximum(active_to - active_from, 0) / (365 * DAY_US)
    n_calls = rng.poisson(INBOUND_CALLS_PER_YEAR[pop.segment] * years)
    cust = np.repeat(np.arange(len(n_calls)), n_calls)
    t = active_from[cust] + (rng.random(len(cust)) * (active_to - active_from)[cust]).astype(
        np.int64)
    outcome = rng.choice([OUTCOMES.index(o) for o in ("neutral", "callback", "negative")],
                         len(cust), p=[0.6, 0.2, 0.2])
    log.add(0, cust, t, outcome, np.round(rng.lognormal(5.5, 0.6, len(cust)), 1), rng)


def draw_social(rng: np.random.Generator, pop: Population, weeks: np.ndarray,
                complaints: np.ndarray) -> pa.Table:
    """Weekly mentions and sentiment for the ~5% of customers with a known social handle."""
    who = np.flatnonzero(rng.random(len(pop.segment)) < 0.05)
    n_w = len(weeks)
    cust = np.repeat(who, n_w)
    mood = np.tanh(0.4 * pop.health[cust] - 0.8 * np.minimum(complaints[cust], 2))
    return build_table("social_signals", {
        "customer_id": pop.ids.take(pa.array(cust.astype(np.int64))),
        "week_start": np.tile(weeks, len(who)),
        "mentions": rng.poisson(0.6 * pop.activity[cust]).astype(np.int64),
        "sentiment": np.round(np.clip(mood + rng.normal(0, 0.3, len(cust)), -1, 1), 3),
    })
