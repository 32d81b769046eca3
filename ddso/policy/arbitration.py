"""Arbitration: from scores to one action = (channel, offer or none), with its reasons.

Pure logic: it takes the customer's consent, features, assessment band and propensity plus
the catalogue of offers, and returns the action and why. Order of checks: consent (a channel
the customer agreed to), the contact-policy cap, eligibility of each offer (band, debt-to-
income, age, income), then ranking of the eligible offers by expected value
(propensity x price x margin). No contact is made when the best expected value does not
cover the contact cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ddso.policy.eligibility import why_ineligible
from ddso.schemas.base import Band, Channel


@dataclass(frozen=True)
class Offer:
    product_id: str
    name: str
    program_kind: str | None
    price: float
    margin: float
    min_band: Band | None = None
    max_debt_to_income: float | None = None
    min_age: int | None = None
    min_income_monthly: float | None = None


@dataclass(frozen=True)
class CustomerFacts:
    consent: Mapping[str, bool]
    preferred_channel: str
    age: int


@dataclass(frozen=True)
class Action:
    channel: str | None
    offer_id: str | None
    expected_value: float
    reason: str
    eligible: tuple[str, ...] = ()
    ineligible: dict[str, str] = field(default_factory=dict)


MAX_CONTACTS_7D = 3


def ineligibility(offer: Offer, band: Band, features: Mapping[str, float], age: int) -> str | None:
    """Why ``offer`` may not be made to this customer, or None if it may."""
    return why_ineligible(offer_limits(offer), customer_facts(band, features, age))


def offer_limits(offer: Offer) -> dict[str, Any]:
    """The eligibility limits of ``offer``, named as :data:`ddso.policy.eligibility.RULES`."""
    return {
        "min_band": offer.min_band,
        "max_debt_to_income": offer.max_debt_to_income,
        "min_age": offer.min_age,
        "min_income_monthly": offer.min_income_monthly,
    }


def customer_facts(band: Band, features: Mapping[str, float], age: int) -> dict[str, Any]:
    """The facts the eligibility rules read, named as :data:`ddso.policy.eligibility.RULES`."""
    return {
        "band": band,
        "debt_to_income": features["debt_to_income"],
        "age": age,
        "monthly_income": features["monthly_income"],
    }


def choose_channel(facts: CustomerFacts) -> str | None:
    if facts.consent.get(facts.preferred_channel, False):
        return facts.preferred_channel
    return next((c.value for c in Channel if facts.consent.get(c.value, False)), None)


def arbitrate(
    facts: CustomerFacts,
    features: Mapping[str, float],
    band: Band,
    propensity: float,
    offers: Sequence[Offer],
    *,
    contact_cost: float = 1.0,
) -> Action:
    """Pick the action for one customer (see the module docstring for the rules)."""
    ineligible: dict[str, str] = {}
    eligible: list[Offer] = []
    customer = customer_facts(band, features, facts.age)
    for offer in offers:
        why = why_ineligible(offer_limits(offer), customer)
        if why is None:
            eligible.append(offer)
        else:
            ineligible[offer.product_id] = why
    names = tuple(o.product_id for o in eligible)
    channel = choose_channel(facts)
    if channel is None:
        return Action(None, None, 0.0, "no channel with consent", names, ineligible)
    if features["contacts_7d"] >= MAX_CONTACTS_7D:
        return Action(
            None, None, 0.0, f"contact cap of {MAX_CONTACTS_7D} per week reached", names, ineligible
        )
    if not eligible:
        return Action(None, None, 0.0, "no eligible offer", names, ineligible)
    # Ties break on product_id so that a decision replays identically.
    best = max(eligible, key=lambda o: (propensity * o.price * o.margin, o.product_id))
    value = propensity * best.price * best.margin
    if value < contact_cost:
        return Action(
            None, None, value, f"expected value {value:.2f} below contact cost", names, ineligible
        )
    return Action(channel, best.product_id, value, "highest expected value", names, ineligible)
