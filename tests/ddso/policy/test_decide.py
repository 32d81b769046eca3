"""The pure decision function: epsilon-greedy seeded by the decision id, exact propensities."""

import math

import numpy as np
import pytest

from ddso.features.sets import cold_start_features
from ddso.policy.arbitration import CustomerFacts, Offer
from ddso.policy.decide import (
    NO_CONTACT,
    candidate_actions,
    decide,
    exploration_draw,
    offer_from_dict,
    offer_to_dict,
)
from ddso.policy.ope import LoggedBandit
from ddso.schemas.base import Band

pytestmark = pytest.mark.unit

OFFERS = [
    Offer("P1", "Card", "card", price=100.0, margin=0.5),
    Offer("P2", "Loan", "loan", price=400.0, margin=0.3, min_band=Band.B),
    Offer("P3", "Savings", "savings", price=50.0, margin=0.2, max_debt_to_income=0.1),
]
FACTS = CustomerFacts({"email": True, "sms": False}, "email", 40)
SCORES = {
    "propensity": 0.2,
    "health_score": 650.0,
    "band": "B",
    "reasons": [{"feature": "recency_days", "text": "bought recently", "contribution": 0.4}],
}


def features(**overrides: float) -> dict[str, float]:
    return {**cold_start_features(), "debt_to_income": 0.3, "monthly_income": 3000.0, **overrides}


def test_same_decision_id_gives_the_identical_decision():
    a = decide("d-1", features(), FACTS, SCORES, OFFERS, epsilon=0.3)
    b = decide("d-1", features(), FACTS, SCORES, OFFERS, epsilon=0.3)
    assert a == b and a.to_dict() == b.to_dict()


def test_greedy_with_epsilon_zero_and_candidates():
    d = decide("d-2", features(), FACTS, SCORES, OFFERS, epsilon=0.0)
    assert (d.channel, d.offer_id) == ("email", "P2") == d.greedy
    assert d.propensity == 1.0 and not d.explored
    assert d.candidates == (NO_CONTACT, ("email", "P1"), ("email", "P2"))
    assert d.ineligible == {"P3": d.ineligible["P3"]} and d.eligible == ("P1", "P2")


def test_propensities_match_the_empirical_frequencies():
    eps = 0.3
    taken: dict[tuple, int] = {}
    props: dict[tuple, float] = {}
    n = 6000
    for i in range(n):
        d = decide(f"id-{i}", features(), FACTS, SCORES, OFFERS, epsilon=eps)
        action = (d.channel, d.offer_id)
        taken[action] = taken.get(action, 0) + 1
        props.setdefault(action, d.propensity)
        assert props[action] == d.propensity
    assert math.isclose(props[("email", "P2")], 1 - eps + eps / 3)
    assert math.isclose(props[NO_CONTACT], eps / 3)
    for action, count in taken.items():
        assert abs(count / n - props[action]) < 0.03
    assert math.isclose(sum(props.values()), 1.0)


def test_no_channel_means_one_action_taken_with_propensity_one():
    facts = CustomerFacts({}, "", 0)
    for i in range(50):
        d = decide(f"x{i}", features(), facts, SCORES, OFFERS, epsilon=1.0)
        assert (d.channel, d.offer_id) == NO_CONTACT and d.propensity == 1.0 and not d.explored
    capped = candidate_actions("email", 3.0, ["P1"])
    assert capped == (NO_CONTACT,)


def test_exploration_draw_depends_only_on_the_id():
    u, n = exploration_draw("abc")
    assert (u, n) == exploration_draw("abc") and 0.0 <= u < 1.0
    assert exploration_draw("abd") != (u, n)


def test_propensities_fit_the_logged_bandit_format():
    rows = [decide(f"b{i}", features(), FACTS, SCORES, OFFERS, epsilon=0.1) for i in range(20)]
    actions = [rows[0].candidates.index((d.channel, d.offer_id)) for d in rows]
    data = LoggedBandit(
        context=np.zeros((20, 1)),
        action=np.array(actions),
        reward=np.zeros(20),
        propensity=np.array([d.propensity for d in rows]),
        n_actions=len(rows[0].candidates),
    )
    assert data.n == 20


@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan")])
def test_bad_epsilon_is_refused(eps):
    with pytest.raises(ValueError, match="epsilon"):
        decide("d", features(), FACTS, SCORES, OFFERS, epsilon=eps)


def test_offers_round_trip_through_dicts():
    assert [offer_from_dict(offer_to_dict(o)) for o in OFFERS] == OFFERS


def test_a_policy_picks_the_greedy_action_among_the_candidates_it_scores():
    calls = []

    def policy(candidates):
        calls.append(candidates)
        return {NO_CONTACT: 0.1, ("email", "P1"): 2.0}  # P2 left unscored

    d = decide("d-p", features(), FACTS, SCORES, OFFERS, epsilon=0.0, policy=policy)
    assert calls == [(NO_CONTACT, ("email", "P1"), ("email", "P2"))]
    assert d.greedy == ("email", "P1") == (d.channel, d.offer_id)  # the rule would take P2
    assert d.scores["policy_score"] == 2.0 and "engagement policy" in d.explanation
    assert d.propensity == 1.0


def test_a_policy_that_scores_nothing_leaves_the_rule_in_charge():
    d = decide("d-q", features(), FACTS, SCORES, OFFERS, epsilon=0.0, policy=lambda c: {})
    assert d.greedy == ("email", "P2") and "policy_score" not in d.scores


def test_with_a_policy_the_propensities_of_the_candidates_still_sum_to_one():
    eps = 0.2

    def policy(candidates):
        return {c: float(i) for i, c in enumerate(candidates)}

    d = decide("d-r", features(), FACTS, SCORES, OFFERS, epsilon=eps, policy=policy)
    total = sum(
        eps / len(d.candidates) + (1 - eps) * (c == d.greedy) for c in d.candidates
    )
    assert total == pytest.approx(1.0) and d.greedy == d.candidates[-1]
