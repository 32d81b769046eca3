"""Champion/challenger for engagement policies by off-policy evaluation on logged decisions.

The holdout is the recent decisions the serving champion made (its version is in each audit
record), with their attributed rewards (:mod:`ddso.policy.labelling`). The champion's value
there is on-policy: the mean reward of its own decisions. The challenger's is estimated by
SNIPS (:func:`ddso.policy.ope.snips`) with the logged propensities, which are exact
(:func:`ddso.policy.decide.decide`'s epsilon-greedy draw), for the challenger as it would be
served: epsilon-greedy around its greedy choice among the same candidates. When the
challenger scores none of a decision's candidates, the served path would fall back to the
logged rule, so its greedy choice there is taken as the logged one.

:func:`compare` gives both values, the challenger's interval and effective sample size;
:func:`gate` promotes through :meth:`ddso.models.registry.ModelRegistry.promote` only when the
lower end of the challenger's 95 % interval is above the champion's value, with enough
overlap (effective sample size), and otherwise says why: with few outcomes the point
estimate is noise (a closed-loop run with 24 conversions in 6,000 decisions promoted a
bandit on its point estimate that then converted worse), so the gate wants evidence.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ddso.errors import UserError
from ddso.models.registry import ModelRegistry, ModelVersion, PromotionRefused
from ddso.policy.bandit import action_key
from ddso.policy.decide import Candidate
from ddso.policy.ope import LoggedBandit, effective_sample_size, importance_weights, snips

GreedyChoice = Callable[[Mapping[str, float], Sequence[Candidate]], Candidate | None]
"""A policy's greedy choice among one decision's candidates (None when it scores none)."""

METRIC = "ope_value"
MIN_ESS = 30.0


@dataclass(frozen=True)
class Comparison:
    n: int
    champion_value: float
    challenger_value: float
    challenger_ci: tuple[float, float]
    ess: float
    """Effective sample size of the challenger's importance weights."""

    def to_dict(self) -> dict[str, float]:
        return {"holdout_decisions": self.n, "champion_value": self.champion_value,
                "challenger_value": self.challenger_value,
                "challenger_ci_low": self.challenger_ci[0],
                "challenger_ci_high": self.challenger_ci[1], "ess": self.ess}


def holdout(records: pd.DataFrame, labels: pd.DataFrame, policy_version: str,
            since: float | None = None) -> pd.DataFrame:
    """The champion's labelled decisions (audit ``records`` with a ``decision`` column,
    joined with ``labels``' rewards), made at or after ``since`` when given."""
    if not len(records):
        return records.assign(reward=[])
    decision = records["decision"].map(json.loads)
    mine = decision.map(lambda d: d["versions"].get("policy")) == policy_version
    if since is not None:
        mine &= records["decided_at"] >= since
    chosen = records[mine].assign(decision=decision[mine])
    rewards = labels.drop_duplicates("decision_id").set_index("decision_id")["reward"]
    return chosen[chosen["decision_id"].isin(rewards.index)].assign(
        reward=lambda f: rewards.reindex(f["decision_id"]).to_numpy(dtype=float))


def compare(rows: pd.DataFrame, challenger: GreedyChoice) -> Comparison:
    """Champion (the logging policy of ``rows``, from :func:`holdout`) vs ``challenger``."""
    if not len(rows):
        raise UserError("no labelled decisions of the champion in the holdout; let the "
                        "feedback job label some first (python -m pipelines.feedback)")
    keys: dict[str, int] = {}
    taken, dist_rows = [], []
    for features, d in zip(rows["features"].map(json.loads), rows["decision"], strict=True):
        candidates = [tuple(c) for c in d["candidates"]]
        for c in candidates:
            keys.setdefault(action_key(*c), len(keys))
        greedy = challenger(features, candidates)
        if greedy is None:
            greedy = tuple(d["greedy"])
        eps = float(d["epsilon"]) if len(candidates) > 1 else 0.0
        probs = {action_key(*c): eps / len(candidates) for c in candidates}
        probs[action_key(*greedy)] = probs.get(action_key(*greedy), 0.0) + 1.0 - eps
        dist_rows.append(probs)
        taken.append(action_key(d["channel"], d["offer_id"]))
    dist = np.zeros((len(rows), len(keys)))
    for i, probs in enumerate(dist_rows):
        for key, p in probs.items():
            dist[i, keys[key]] = p
    data = LoggedBandit(context=np.zeros((len(rows), 1)),
                        action=np.array([keys[k] for k in taken]),
                        reward=rows["reward"].to_numpy(dtype=float),
                        propensity=rows["propensity"].to_numpy(dtype=float),
                        n_actions=len(keys))
    estimate = snips(data, dist)
    return Comparison(n=len(rows), champion_value=float(data.reward.mean()),
                      challenger_value=estimate.value, challenger_ci=estimate.ci(),
                      ess=effective_sample_size(importance_weights(data, dist)))


def gate(registry: ModelRegistry, candidate: ModelVersion, comparison: Comparison,
         min_ess: float = MIN_ESS) -> ModelVersion:
    """Promote ``candidate`` if its estimate beats the champion's on the holdout; else raise
    :class:`PromotionRefused` with the numbers."""
    if comparison.ess < min_ess:
        raise PromotionRefused(
            f"refused: {candidate.name} {candidate.version} has an effective sample size of "
            f"{comparison.ess:.1f} on {comparison.n} holdout decisions (needs {min_ess:g}): "
            "too little logged support to judge it; the champion stays")
    low = comparison.challenger_ci[0]
    if not low > comparison.champion_value:
        # also when the champion is the rule policy, which the registry does not hold
        raise PromotionRefused(
            f"refused: candidate {candidate.name} {candidate.version} has {METRIC}="
            f"{comparison.challenger_value:.4f} (95% interval from {low:.4f}), not surely "
            f"better than the champion's {comparison.champion_value:.4f} on the same "
            f"{comparison.n} holdout decisions; the champion stays")
    return registry.promote(candidate.name, candidate.version, metric=METRIC,
                            champion_score=comparison.champion_value)
