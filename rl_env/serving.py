"""The trained engagement policy on the serving path: observations from served features.

:class:`EngagementPolicy` loads the registry's ``engagement_policy`` (a
:class:`~rl_env.export.NumpyPolicy`) and scores the candidate actions of one decision
(:func:`ddso.policy.decide.decide`), so that the policy, not the propensity x value rule,
picks the greedy action.

The environment observes journey state the platform does not serve; the serving observation
(:func:`served_observation`) fills those columns as follows, and the policy should be judged
with that in mind:

* the customer's served features, band, age, preferred channel and consent: as served;
* ``stage``: ``lead`` (the platform decides for customers it is still acquiring); ``day``: 0;
* ``weekday``: the decision's own (UTC);
* ``days_since_<channel>``: ``days_since_last_contact`` for every channel, and
  ``week_contacts_<channel>``: ``contacts_7d`` on the preferred channel (per-channel contact
  history is not a served feature);
* the enrolled program's columns: 0.

The mapping is a pure function of what the audit record keeps (features, facts, band and the
decision time), so a decision made with the policy replays bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ddso.data.population import CHANNELS
from ddso.errors import UserError
from ddso.features.financial import FEATURE_COLUMNS as FINANCIAL_FEATURES
from ddso.models.registry import ModelRegistry, ModelVersion
from ddso.policy.arbitration import CustomerFacts
from ddso.policy.bandit import KIND as BANDIT_KIND
from ddso.policy.bandit import BanditPolicy
from ddso.policy.decide import POLICY_MODEL, PolicyScores
from ddso.schemas.base import Band
from rl_env.dynamics import STAGES
from rl_env.export import NumpyPolicy
from rl_env.observation import JOURNEY_SERVED, OBS_INDEX, OBS_NAMES, WEEKDAYS

_BANDS = tuple(b.value for b in Band)


def served_observation(features: Mapping[str, float], facts: CustomerFacts, band: str,
                       decided_at: float) -> np.ndarray:
    """(1, len(OBS_NAMES)) float32 observation of one customer at ``decided_at`` (epoch s)."""
    obs = np.zeros((1, len(OBS_NAMES)), np.float32)
    row, col = obs[0], OBS_INDEX

    def put(name: str, value: float) -> None:
        row[col[name]] = 0.0 if value is None or not math.isfinite(value) else max(value, 0.0)

    for name in (*FINANCIAL_FEATURES, *JOURNEY_SERVED):
        put(name, float(features.get(name, 0.0)))
    put("assessment_band", float(_BANDS.index(band)))
    put("age", float(facts.age))
    for channel in CHANNELS:
        row[col[f"preferred_{channel}"]] = float(facts.preferred_channel == channel)
        row[col[f"consent_{channel}"]] = float(bool(facts.consent.get(channel, False)))
        put(f"days_since_{channel}", float(features.get("days_since_last_contact", 0.0)))
    if facts.preferred_channel in CHANNELS:
        put(f"week_contacts_{facts.preferred_channel}", float(features.get("contacts_7d", 0.0)))
    row[col[f"stage_{STAGES[0]}"]] = 1.0
    weekday = datetime.fromtimestamp(decided_at, UTC).weekday()
    row[col[f"weekday_{WEEKDAYS[weekday]}"]] = 1.0
    return obs


class EngagementPolicy:
    """One registry version of the engagement policy, scoring a decision's candidates."""

    def __init__(self, version: ModelVersion):
        programs = version.metadata.get("programs")
        if not programs:
            raise UserError(
                f"{version.name}:{version.version} does not record the programs of its actions; "
                "retrain it with `python -m pipelines.train_policy`"
            )
        self.policy = NumpyPolicy.load(version.artifact("policy.npz"))
        self.programs = {p: i for i, p in enumerate(programs)}
        self.version = f"{version.name}:{version.version}"
        self.artifact_sha256 = version.artifact_sha256

    def ranker(self, features: Mapping[str, float], facts: CustomerFacts, band: str,
               decided_at: float) -> PolicyScores:
        """:meth:`scores` for one decision, as :func:`ddso.policy.decide.decide` takes it."""
        return lambda candidates: self.scores(features, facts, band, decided_at, candidates)

    def scores(self, features: Mapping[str, float], facts: CustomerFacts, band: str,
               decided_at: float, candidates: Sequence[tuple[str | None, str | None]]
               ) -> dict[tuple[str | None, str | None], float]:
        """The policy's logit of each candidate it knows (offers it was not trained on and
        channels outside the environment's are left out)."""
        logits = self.policy.logits(served_observation(features, facts, band, decided_at))[0]
        width = len(self.programs) + 1  # actions per channel: no offer, then each program
        out = {}
        for channel, offer in candidates:
            if channel is None:
                out[(channel, offer)] = float(logits[0])
            elif channel in CHANNELS and (offer is None or offer in self.programs):
                # rl_env.dynamics.encode_actions for one action (tested equal).
                program = -1 if offer is None else self.programs[offer]
                action = 1 + CHANNELS.index(channel) * width + program + 1
                out[(channel, offer)] = float(logits[action])
        return out


def load_policy(registry: ModelRegistry, version: str | None = None
                ) -> EngagementPolicy | BanditPolicy | None:
    """The champion engagement policy, or None when there is none (the rule decides then).

    With ``version`` (``v0003`` or ``engagement_policy:v0003``), that version; a UserError if
    the registry has no such version.
    """
    if version is not None:
        name, _, number = version.rpartition(":")
        if name not in ("", POLICY_MODEL):
            raise UserError(f"policy version {version!r} is not a version of {POLICY_MODEL}")
        return policy_for(registry.get(POLICY_MODEL, number))
    try:
        champion = registry.champion(POLICY_MODEL)
    except UserError:
        return None
    return policy_for(champion)


def policy_for(version: ModelVersion) -> EngagementPolicy | BanditPolicy:
    """The policy a registry version holds: the RL policy's network, or the contextual
    bandit (``kind: linear_bandit``, fitted on logged decisions by ``pipelines.retrain``)."""
    if version.metadata.get("kind") == BANDIT_KIND:
        return BanditPolicy(version)
    return EngagementPolicy(version)


def register_untrained(registry: ModelRegistry, programs: Sequence[str], folder: str | Path,
                       seed: int = 0) -> ModelVersion:
    """Register :meth:`NumpyPolicy.untrained` for ``programs`` as the engagement policy
    champion (the first version of a registry is the champion): the serving cost of a policy
    without training one, for benchmarks and tests."""
    n_actions = 1 + len(CHANNELS) * (len(programs) + 1)
    path = NumpyPolicy.untrained(n_actions, seed=seed).save(Path(folder) / "policy.npz")
    return registry.register(POLICY_MODEL, {"policy.npz": path},
                             {"metrics": {}, "programs": list(programs), "untrained": True})
