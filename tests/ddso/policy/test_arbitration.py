import pytest

from ddso.features.sets import cold_start_features
from ddso.policy.arbitration import CustomerFacts, Offer, arbitrate
from ddso.schemas.base import Band

pytestmark = pytest.mark.unit

OFFERS = [
    Offer("P1", "Credit builder", "credit_builder", price=300, margin=0.4, min_band=Band.D),
    Offer(
        "P2",
        "Premium card",
        "card",
        price=1000,
        margin=0.3,
        min_band=Band.B,
        max_debt_to_income=0.35,
    ),
    Offer(
        "P3",
        "Loan",
        "loan",
        price=5000,
        margin=0.2,
        min_band=Band.C,
        min_age=25,
        min_income_monthly=2500,
    ),
]
FACTS = CustomerFacts(consent={"email": True, "sms": True}, preferred_channel="sms", age=40)


def features(**changes):
    return {**cold_start_features(), "debt_to_income": 0.2, "monthly_income": 4000, **changes}


def test_picks_highest_expected_value_among_eligible():
    a = arbitrate(FACTS, features(), Band.B, 0.1, OFFERS)
    assert (a.channel, a.offer_id) == ("sms", "P3") and a.expected_value == pytest.approx(100)
    assert set(a.eligible) == {"P1", "P2", "P3"}


def test_eligibility_rules_each_name_the_rule():
    a = arbitrate(FACTS, features(debt_to_income=0.5, monthly_income=2000), Band.C, 0.1, OFFERS)
    assert a.offer_id == "P1"
    assert "band C" in a.ineligible["P2"] and "monthly income" in a.ineligible["P3"]
    young = CustomerFacts(FACTS.consent, "email", age=22)
    assert "age 22" in arbitrate(young, features(), Band.A, 0.1, OFFERS).ineligible["P3"]


def test_consent_cap_and_value_gates():
    none = arbitrate(CustomerFacts({}, "email", 40), features(), Band.A, 0.5, OFFERS)
    assert none.channel is None and "consent" in none.reason
    fallback = arbitrate(
        CustomerFacts({"email": True}, "call", 40), features(), Band.A, 0.5, OFFERS
    )
    assert fallback.channel == "email"
    capped = arbitrate(FACTS, features(contacts_7d=3), Band.A, 0.5, OFFERS)
    assert capped.offer_id is None and "cap" in capped.reason
    cheap = arbitrate(FACTS, features(), Band.A, 0.0001, OFFERS)
    assert cheap.offer_id is None and "contact cost" in cheap.reason
    assert arbitrate(FACTS, features(), Band.E, 0.5, OFFERS).reason == "no eligible offer"
