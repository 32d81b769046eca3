"""The program funnel: offers -> qualification -> acceptance -> enrolment -> payments -> end.

Every customer is a lead. A legacy campaign shows program offers through channels the
customer consents to; whether a lead responds depends on latent interest (which also drives
how often they browse program pages), on offer fit and eligibility, on the channel being the
preferred one and on financial health. Enrolled journeys are followed to graduation or
dropout even past the window's end, so lifecycle events may lie after ``start + days``.

The intercepts below are calibrated so that, over a cohort at the defaults, conversion
(enrolled / leads) is about 0.9% and graduation (graduated / leads) about 0.69%, the DDSO
seed's "before" figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddso.data.crm import NEVER, Churn, CrmLog
from ddso.data.event_table import CONTACT_CHANNELS, OUTCOMES, REASONS, SALE_CHANNELS, SOURCES
from ddso.data.population import Population, sigmoid
from ddso.data.world import DAY_US, PROGRAM_KINDS, Catalogue

_QUALIFY_0 = -5.8
_ACCEPT_0 = -3.95
_GRADUATE_0 = -0.22
MONTH_US = int(30.4 * DAY_US)
_CRM, _BANKING = SOURCES.index("crm"), SOURCES.index("core_banking")
_CH0 = len(SALE_CHANNELS)  # contact channels follow the sale channels in the vocabulary


@dataclass
class Funnel:
    """Per-customer funnel outcomes of a chunk (times are ``NEVER`` when it did not happen)."""

    contacted_us: np.ndarray
    qualified_us: np.ndarray
    enrolled_us: np.ndarray
    active_us: np.ndarray
    graduated_us: np.ndarray
    dropped_us: np.ndarray
    ideal_kind: np.ndarray
    enroll_probability: np.ndarray


def ideal_kind(pop: Population) -> np.ndarray:
    """The program kind that suits a customer's finances (what a good adviser would offer)."""
    kind = np.where(pop.health > 0.6, PROGRAM_KINDS.index("savings_plan"),
                    PROGRAM_KINDS.index("insurance"))
    kind = np.where((pop.health > 0.2) & (pop.age < 40), PROGRAM_KINDS.index("card"), kind)
    kind = np.where((pop.health > 0.9) & (pop.income > 3000), PROGRAM_KINDS.index("loan"), kind)
    kind = np.where(pop.health < -0.2, PROGRAM_KINDS.index("credit_builder"), kind)
    return np.where((pop.health < -0.5) & (pop.dti > 0.3),
                    PROGRAM_KINDS.index("debt_consolidation"), kind)


def _first_per_customer(cust: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, NEVER)
    np.minimum.at(out, cust, t)
    return out


def draw_funnel(rng: np.random.Generator, pop: Population, cg: Catalogue,
                active_from: np.ndarray, end_us: int, churn: Churn, log: CrmLog) -> Funnel:
    """Add offer, CRM, enrolment and program events; cancel churn for those who enrol."""
    n = len(pop.segment)
    events = log.events
    reachable = pop.consent[:, :4].any(1)
    until = np.minimum(churn.time_us, end_us)
    n_off = rng.poisson(2.0, n) * reachable * (until > active_from)
    cust = np.repeat(np.arange(n), n_off)
    t = active_from[cust] + (rng.random(len(cust)) * (until - active_from)[cust]).astype(np.int64)
    order = np.lexsort((t, cust))
    cust, t = cust[order], t[order]
    # The preferred channel when consented, else any consented channel.
    consent = pop.consent[cust]
    pick = np.where(rng.random(len(cust)) < 0.7, pop.preferred[cust], rng.integers(0, 4, len(cust)))
    ok = consent[np.arange(len(cust)), pick]
    first_ok = np.argmax(consent, 1)
    channel = np.where(ok, pick, first_ok)
    ideal = ideal_kind(pop)
    matched = rng.random(len(cust)) < 0.5
    kind_pick = np.where(matched, ideal[cust], rng.integers(0, len(PROGRAM_KINDS), len(cust)))
    prog_i = np.zeros(len(cust), np.int64)
    for k in range(len(PROGRAM_KINDS)):
        members = np.flatnonzero(cg.program_kind == k)
        sel = kind_pick == k
        prog_i[sel] = members[rng.integers(0, len(members), sel.sum())]
    fit = cg.program_kind[prog_i] == ideal[cust]
    eligible = ((pop.band[cust] <= cg.min_band[prog_i]) & (pop.age[cust] >= cg.min_age[prog_i])
                & (pop.income[cust] >= cg.min_income[prog_i])
                & ~(pop.dti[cust] > cg.max_dti[prog_i]))
    h = pop.health[cust]
    p_q = sigmoid(_QUALIFY_0 + 4.0 * pop.interest[cust] + 0.8 * (channel == pop.preferred[cust])
                  + 0.8 * fit + 0.2 * h)
    p_a = sigmoid(_ACCEPT_0 + 2.0 * pop.interest[cust] + 1.2 * fit + 0.4 * h)
    qualified = rng.random(len(cust)) < p_q
    accepted = qualified & (rng.random(len(cust)) < p_a)
    enroll_offer = accepted & eligible
    respond = t + (rng.uniform(1, 7, len(cust)) * DAY_US).astype(np.int64)
    enroll_t = respond + (rng.uniform(1, 5, len(cust)) * DAY_US).astype(np.int64)
    first_enroll = _first_per_customer(cust[enroll_offer], enroll_t[enroll_offer], n)
    # The campaign stops at enrolment: later offers are never made.
    made = t < first_enroll[cust]
    enroll_offer &= enroll_t == first_enroll[cust]
    cust, t, channel, prog_i, qualified, accepted, respond, enroll_t, enroll_offer = (
        a[made] for a in (cust, t, channel, prog_i, qualified, accepted, respond, enroll_t,
                          enroll_offer))
    offer_num = np.arange(len(cust))
    common = {"offer_id": offer_num, "product_id": cg.program_products[prog_i],
              "channel": _CH0 + channel, "source": np.full(len(cust), _CRM)}
    events.add("offer_shown", cust, t, **common)
    # Calls and e-mails leave a CRM trace whose outcome shows the response.
    for kind, ch in ((0, CONTACT_CHANNELS.index("call")), (1, CONTACT_CHANNELS.index("email"))):
        sel = channel == ch
        miss = rng.choice([OUTCOMES.index(o) for o in ("no_answer", "neutral", "negative")],
                          sel.sum(), p=[0.55, 0.35, 0.1])
        outcome = np.where(qualified[sel], OUTCOMES.index("positive"), miss)
        dur = np.where(kind == 0, np.round(rng.lognormal(5.0, 0.7, sel.sum()), 1), 0.0)
        log.add(kind, cust[sel], t[sel] + 1, outcome, dur, rng)
    meet = qualified & (rng.random(len(cust)) < 0.4)
    log.add(2, cust[meet], respond[meet] - DAY_US // 2, np.where(
        accepted[meet], OUTCOMES.index("positive"), OUTCOMES.index("neutral")),
        np.round(rng.lognormal(7.5, 0.4, meet.sum()), 1), rng)
    declined = (qualified & ~accepted) | (~qualified & (rng.random(len(cust)) < 0.1))
    for type_, sel in (("offer_accepted", accepted), ("offer_declined", declined)):
        events.add(type_, cust[sel], respond[sel], **{k: v[sel] for k, v in common.items()})

    # Programs: payments each month, late more often for the financially weak; a dropout
    # for missed payments is preceded by two late payments.
    e = np.flatnonzero(enroll_offer)
    ec, et, ep = cust[e], enroll_t[e], prog_i[e]
    months = cg.program_months[ep]
    monthly = np.round(cg.price[cg.program_products[ep]] / months, 2)
    eh = pop.health[ec]
    graduates = rng.random(len(e)) < sigmoid(_GRADUATE_0 + 1.0 * eh + 0.6 * (
        cg.program_kind[ep] == ideal[ec]) + 1.0 * pop.interest[ec])
    drop_month = 1 + np.floor((months - 1) * rng.beta(1.2, 2.0, len(e))).astype(np.int64)
    n_pay = np.where(graduates, months, drop_month)
    missed = ~graduates & (rng.random(len(e)) < sigmoid(-1.0 - 1.5 * eh))
    events.add("enrollment", ec, et, enrollment_id=np.arange(len(e)),
               product_id=cg.program_products[ep], monthly_payment=monthly,
               source=np.full(len(e), _BANKING))
    pe = np.repeat(np.arange(len(e)), n_pay)
    j = np.arange(len(pe)) - np.repeat(np.cumsum(n_pay) - n_pay, n_pay)
    late = rng.random(len(pe)) < sigmoid(-2.2 - 1.2 * pop.health[ec[pe]])
    days_late = np.where(late, rng.geometric(0.15, len(pe)), 0)
    tail = missed[pe] & (j >= n_pay[pe] - 2)
    days_late = np.where(tail, rng.integers(30, 61, len(pe)), days_late)
    pay_t = et[pe] + (j + 1) * MONTH_US + days_late * DAY_US
    events.add("program_payment", ec[pe], pay_t, enrollment_id=pe, amount=monthly[pe],
               days_late=days_late, source=np.full(len(pe), _BANKING))
    end_t = et + n_pay * MONTH_US + (rng.uniform(1, 20, len(e)) * DAY_US).astype(np.int64)
    end_t = np.maximum(end_t, et + n_pay * MONTH_US + 61 * DAY_US * missed)
    g, d = graduates, ~graduates
    events.add("graduation", ec[g], end_t[g], enrollment_id=np.flatnonzero(g),
               source=np.full(g.sum(), _BANKING))
    reason = np.where(missed, 0, rng.choice([REASONS.index(r) for r in ("voluntary", "moved",
                                                                        "other")], len(e)))
    events.add("dropout", ec[d], end_t[d], enrollment_id=np.flatnonzero(d), reason=reason[d],
               source=np.full(d.sum(), _BANKING))
    # Enrolled customers stay: a program keeps them from churning in the window.
    enrolled_us = _first_per_customer(ec, et, n)
    churn.time_us[enrolled_us < NEVER] = NEVER
    # Qualified as the data shows it: an acceptance, or a positive call or e-mail.
    traced = qualified & np.isin(channel, [CONTACT_CHANNELS.index("call"),
                                           CONTACT_CHANNELS.index("email")])
    shown_q = np.where(traced, t + 1, np.where(accepted, respond, NEVER))
    return Funnel(
        contacted_us=_first_per_customer(cust, t, n),
        qualified_us=_first_per_customer(cust, shown_q, n),
        enrolled_us=enrolled_us,
        active_us=_first_per_customer(ec, et + MONTH_US, n),
        graduated_us=_first_per_customer(ec[g], end_t[g], n),
        dropped_us=_first_per_customer(ec[d], end_t[d], n),
        ideal_kind=ideal,
        enroll_probability=1 - np.exp(np.bincount(
            cust, weights=np.log1p(-p_q[made] * p_a[made] * eligible[made]), minlength=n)),
    )
