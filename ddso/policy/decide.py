"""The decision function: scores, facts and offers in, one logged decision out.

Pure and deterministic: the same inputs give the same :class:`Decision`, bit for bit, so a
decision replays from its audit record (:mod:`ddso.audit`). The greedy action is the one
:func:`ddso.policy.arbitration.arbitrate` picks; with probability ``epsilon`` a uniformly drawn
candidate action replaces it (epsilon-greedy exploration). The draw is derived from the
``decision_id`` alone (SHA-256), never from a global random state, so the probability of the
action taken (its propensity) is known exactly and logs in the logged-bandit format of
:class:`ddso.policy.ope.LoggedBandit`.

Candidate actions are "no contact" plus each eligible offer on the consented channel; when
no channel may be used (no consent, contact cap), "no contact" is the only one and is taken
with propensity 1.

:class:`PropensityScorer` turns a feature row into the scores ``decide`` reads, from one
registry version of the propensity model; the serving path
(:class:`serve_deployments.service.DecisionService`) and ``ddso audit replay`` both use it,
so replay runs exactly the serving code.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from ddso.models import scorecard
from ddso.models.binary import load_calibrator
from ddso.models.reasons import top_reasons
from ddso.models.registry import ModelVersion
from ddso.models.xgb import XGBScorer
from ddso.policy.arbitration import (
    MAX_CONTACTS_7D,
    CustomerFacts,
    Offer,
    arbitrate,
    choose_channel,
)
from ddso.schemas.base import Band

DEFAULT_EPSILON = 0.05
NO_CONTACT: tuple[str | None, str | None] = (None, None)
RULE_POLICY = "propensity_x_value"
"""The ``policy`` version of decisions made without a learned policy."""
POLICY_MODEL = "engagement_policy"
"""The registry name of the learned engagement policy (RL network or contextual bandit)."""
Candidate = tuple[str | None, str | None]
PolicyScores = Callable[[Sequence[Candidate]], Mapping[Candidate, float]]
"""A learned policy's scores of the candidate actions (higher is better); candidates it does
not score are left out of its ranking."""


@dataclass(frozen=True)
class Decision:
    """One decision, as answered and as audited."""

    decision_id: str
    channel: str | None
    offer_id: str | None
    propensity: float
    """Probability that the policy takes this action for these inputs, in (0, 1]."""
    explored: bool
    """True when the exploration draw, not the greedy rule, chose the action."""
    greedy: tuple[str | None, str | None]
    candidates: tuple[tuple[str | None, str | None], ...]
    epsilon: float
    scores: dict[str, Any]
    reasons: tuple[dict[str, Any], ...]
    eligible: tuple[str, ...]
    ineligible: dict[str, str]
    explanation: str
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready values (what the audit record stores).

        Shallow: ``scores`` and the reason dicts are shared, not copied (``asdict``'s deep
        copy was a tenth of the decision's serving cost).
        """
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["greedy"] = list(self.greedy)
        d["candidates"] = [list(c) for c in self.candidates]
        d["reasons"] = list(self.reasons)
        d["eligible"] = list(self.eligible)
        return d


def exploration_draw(decision_id: str) -> tuple[float, int]:
    """``(u, n)``: a uniform number in [0, 1) and a large integer, both from the id alone."""
    digest = hashlib.sha256(decision_id.encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return u, int.from_bytes(digest[8:16], "big")


def candidate_actions(
    channel: str | None, contacts_7d: float, eligible: Sequence[str]
) -> tuple[tuple[str | None, str | None], ...]:
    """The actions exploration may take: no contact, then each eligible offer on ``channel``."""
    if channel is None or contacts_7d >= MAX_CONTACTS_7D:
        return (NO_CONTACT,)
    return (NO_CONTACT, *((channel, offer_id) for offer_id in sorted(eligible)))


def decide(
    decision_id: str,
    features: Mapping[str, float],
    facts: CustomerFacts,
    scores: Mapping[str, Any],
    offers: Sequence[Offer],
    *,
    epsilon: float = DEFAULT_EPSILON,
    versions: Mapping[str, str] | None = None,
    policy: PolicyScores | None = None,
) -> Decision:
    """The decision for one customer; ``scores`` are :meth:`PropensityScorer.score`'s.

    With ``policy`` (the exported engagement policy, :mod:`rl_env.serving`), the greedy
    action is the candidate the policy scores highest; without it, or when it scores none of
    the candidates, the propensity x value rule of :func:`arbitrate` picks it.
    """
    if not (math.isfinite(epsilon) and 0.0 <= epsilon <= 1.0):
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    propensity_score = float(scores["propensity"])
    action = arbitrate(facts, features, Band(scores["band"]), propensity_score, offers)
    greedy = (action.channel, action.offer_id)
    candidates = candidate_actions(choose_channel(facts), features["contacts_7d"], action.eligible)
    if greedy not in candidates:  # arbitrate and the candidate rule disagree: never explore
        candidates = (*candidates, greedy)
    reason, policy_score = action.reason, None
    if policy is not None and len(candidates) > 1:  # with one candidate there is no choice
        ranked = policy(candidates)
        known = [c for c in candidates if c in ranked]
        if known:
            greedy = max(known, key=lambda c: ranked[c])  # ties: the first candidate
            policy_score = float(ranked[greedy])
            reason = f"engagement policy: the best of {len(known)} allowed actions"
    u, index = exploration_draw(decision_id)
    explored = len(candidates) > 1 and u < epsilon
    chosen = candidates[index % len(candidates)] if explored else greedy
    share = epsilon / len(candidates) if len(candidates) > 1 else 0.0
    propensity = share + (1.0 - (epsilon if len(candidates) > 1 else 0.0)) * (chosen == greedy)
    explanation = (
        f"exploration (epsilon {epsilon:g}) among {len(candidates)} actions"
        if explored and chosen != greedy
        else reason
    )
    return Decision(
        decision_id=decision_id,
        channel=chosen[0],
        offer_id=chosen[1],
        propensity=propensity,
        explored=explored,
        greedy=greedy,
        candidates=candidates,
        epsilon=epsilon,
        scores={
            "propensity": propensity_score,
            "health_score": float(scores["health_score"]),
            "band": scores["band"],
            "expected_value": action.expected_value,
            **({} if policy_score is None else {"policy_score": policy_score}),
        },
        reasons=tuple(
            {k: r[k] for k in ("feature", "text", "contribution")} for r in scores["reasons"]
        ),
        eligible=tuple(action.eligible),
        ineligible=dict(sorted(action.ineligible.items())),
        explanation=explanation,
        versions=dict(versions or {}),
    )


class PropensityScorer:
    """One registry version of the propensity model with the financial-health scorecard."""

    def __init__(self, version: ModelVersion):
        self.features = list(version.metadata["features"])
        self.scorer = XGBScorer(version.artifact("model.ubj"), self.features)
        self.calibrator = load_calibrator(version)
        self.version = f"{version.name}:{version.version}"
        self.artifact_sha256 = version.artifact_sha256

    def score(self, features: Mapping[str, float]) -> dict[str, Any]:
        row = self.scorer.vector(dict(features))
        propensity = float(self.calibrator.apply(self.scorer.predict(row)))
        contributions = self.scorer.contributions(row)
        reasons = top_reasons(contributions, self.features, row[0])
        health = scorecard.health_score(features)
        return {
            "propensity": propensity,
            "health_score": health,
            "band": scorecard.band(health).value,
            "reasons": [
                {"feature": r.feature, "text": r.text, "contribution": float(r.contribution)}
                for r in reasons
            ],
            "model_version": self.version,
            "model_sha256": self.artifact_sha256,
        }


def offer_to_dict(offer: Offer) -> dict[str, Any]:
    d = asdict(offer)
    d["min_band"] = None if offer.min_band is None else offer.min_band.value
    return d


def offer_from_dict(d: Mapping[str, Any]) -> Offer:
    return Offer(**{**d, "min_band": None if d["min_band"] is None else Band(d["min_band"])})
