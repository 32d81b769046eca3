"""The engagement policy on the serving path: the served observation, candidate scores equal
to the network's logits, and a decision made with it that replays bit for bit."""

from datetime import UTC, datetime

import numpy as np
import pytest

from ddso.data.population import CHANNELS
from ddso.features.sets import cold_start_features
from ddso.models.registry import ModelRegistry
from ddso.policy.arbitration import CustomerFacts, Offer
from ddso.policy.decide import NO_CONTACT, decide
from rl_env.dynamics import encode_actions
from rl_env.export import NumpyPolicy
from rl_env.observation import OBS_INDEX, OBS_NAMES
from rl_env.serving import POLICY_MODEL, EngagementPolicy, load_policy, served_observation

pytestmark = pytest.mark.unit

PROGRAMS = ["P1", "P2", "P3"]
FACTS = CustomerFacts({"email": True, "sms": True}, "sms", 41)
MONDAY = datetime(2025, 3, 3, 12, tzinfo=UTC).timestamp()


def _features(**kw: float) -> dict[str, float]:
    return {**cold_start_features(), "debt_to_income": 0.3, "monthly_income": 3000.0,
            "contacts_7d": 2.0, "days_since_last_contact": 5.0, **kw}


def _policy(seed: int = 0) -> NumpyPolicy:
    return NumpyPolicy.untrained(1 + len(CHANNELS) * (len(PROGRAMS) + 1), (8,), seed)


@pytest.fixture
def registry(tmp_path):
    reg = ModelRegistry(str(tmp_path / "registry"))
    path = _policy().save(tmp_path / "policy.npz")
    reg.register(POLICY_MODEL, {"policy.npz": path},
                 {"metrics": {"eval_mean_return": 0.1}, "programs": PROGRAMS})
    return reg


def test_the_served_observation_maps_what_is_served():
    obs = served_observation(_features(contacts_7d=3.0), FACTS, "C", MONDAY)[0]
    assert obs.shape == (len(OBS_NAMES),)
    assert obs[OBS_INDEX["debt_to_income"]] == np.float32(0.3)
    assert obs[OBS_INDEX["assessment_band"]] == 2.0 and obs[OBS_INDEX["age"]] == 41.0
    assert obs[OBS_INDEX["preferred_sms"]] == 1.0 and obs[OBS_INDEX["preferred_email"]] == 0.0
    assert obs[OBS_INDEX["consent_email"]] == 1.0 and obs[OBS_INDEX["consent_call"]] == 0.0
    assert obs[OBS_INDEX["weekday_mon"]] == 1.0 and obs[OBS_INDEX["stage_lead"]] == 1.0
    assert obs[OBS_INDEX["week_contacts_sms"]] == 3.0 and obs[OBS_INDEX["days_since_call"]] == 5.0
    assert np.isfinite(obs).all() and (obs >= 0).all()


def test_candidate_scores_are_the_networks_logits(registry):
    policy = load_policy(registry)
    logits = policy.policy.logits(served_observation(_features(), FACTS, "B", MONDAY))[0]
    cands = (NO_CONTACT, ("sms", "P2"), ("sms", None), ("sms", "P9"), ("fax", "P1"))
    scores = policy.scores(_features(), FACTS, "B", MONDAY, cands)
    assert set(scores) == {NO_CONTACT, ("sms", "P2"), ("sms", None)}  # unknown ones left out
    sms = CHANNELS.index("sms")
    assert scores[NO_CONTACT] == logits[0]
    assert scores[("sms", "P2")] == logits[encode_actions(np.array([sms]), np.array([1]), 3)[0]]
    assert scores[("sms", None)] == logits[encode_actions(np.array([sms]), np.array([-1]), 3)[0]]


def test_no_champion_means_no_policy_and_an_old_policy_is_refused(tmp_path):
    reg = ModelRegistry(str(tmp_path / "r"))
    assert load_policy(reg) is None
    version = reg.register(POLICY_MODEL, {"policy.npz": _policy().save(tmp_path / "p.npz")},
                           {"metrics": {}})
    with pytest.raises(Exception, match="does not record the programs"):
        EngagementPolicy(version)


def test_a_decision_made_with_the_policy_follows_it(registry):
    policy = load_policy(registry)
    offers = [Offer(p, p, "card", price=100.0, margin=0.3) for p in PROGRAMS]
    scores = {"propensity": 0.2, "health_score": 650.0, "band": "B", "reasons": []}
    d = decide("d-1", _features(), FACTS, scores, offers, epsilon=0.0,
               policy=lambda c: policy.scores(_features(), FACTS, "B", MONDAY, c))
    ranked = policy.scores(_features(), FACTS, "B", MONDAY, d.candidates)
    assert d.greedy == max(d.candidates, key=lambda c: ranked[c])
    assert d.scores["policy_score"] == ranked[d.greedy]
