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

Off-policy evidence is often too thin to be sure: the challenger's actions are seen only
where exploration drew them (epsilon 0.2 over ten offers: 2 % of decisions each), so a
challenger that changes most decisions has a small effective sample size. The comparison's
:attr:`Comparison.verdict` then says ``undecided`` (neither surely better nor surely worse),
and the candidate is judged online instead: a champion/challenger experiment
(:mod:`ddso.experiments`) measures both on-policy, and :func:`gate_experiment` promotes the
challenger when the experiment's always-valid test shows it better on the primary metric
with no guardrail breached. A ``worse`` candidate is not worth an experiment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ddso.errors import UserError
from ddso.experiment_report import ExperimentReport
from ddso.experiments import RULES, Arm, Experiment, record_conclusion
from ddso.models.registry import ModelRegistry, ModelVersion, PromotionRefused
from ddso.policy.bandit import action_key
from ddso.policy.decide import POLICY_MODEL, RULE_POLICY, Candidate
from ddso.policy.ope import (
    LoggedBandit,
    effective_sample_size,
    importance_weights,
    snips_weighted,
)

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

    def verdict(self, min_ess: float = MIN_ESS) -> str:
        """``better`` / ``worse``: the challenger's 95 % interval lies above / below the
        champion's value (with enough support); else ``undecided``."""
        if self.ess >= min_ess and self.challenger_ci[0] > self.champion_value:
            return "better"
        if self.ess >= min_ess and self.challenger_ci[1] < self.champion_value:
            return "worse"
        return "undecided"

    @classmethod
    def from_weights(cls, weights: np.ndarray, reward: np.ndarray) -> Comparison:
        """The champion's decisions (their ``reward``) judged for a challenger whose
        importance weight on each is ``weights``: its SNIPS value and interval."""
        estimate = snips_weighted(weights, reward)
        return cls(n=len(reward), champion_value=float(np.mean(reward)),
                   challenger_value=estimate.value, challenger_ci=estimate.ci(),
                   ess=effective_sample_size(np.asarray(weights, dtype=float)))

    def to_dict(self) -> dict[str, float | str]:
        return {"holdout_decisions": self.n, "champion_value": self.champion_value,
                "challenger_value": self.challenger_value,
                "challenger_ci_low": self.challenger_ci[0],
                "challenger_ci_high": self.challenger_ci[1], "ess": self.ess,
                "ope_verdict": self.verdict()}


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
    """Champion (the logging policy of ``rows``, from :func:`holdout`) vs ``challenger``,
    which is given each decision's ``context`` (or, without that column, its features)."""
    if not len(rows):
        raise UserError("no labelled decisions of the champion in the holdout; let the "
                        "feedback job label some first (python -m pipelines.feedback)")
    keys: dict[str, int] = {}
    taken, dist_rows = [], []
    # the policy's context: a ``context`` column when the caller built one (the bandit's),
    # else the served features
    contexts = rows["context"] if "context" in rows else rows["features"].map(json.loads)
    for features, d in zip(contexts, rows["decision"], strict=True):
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
    return Comparison.from_weights(importance_weights(data, dist), data.reward)


def gate(registry: ModelRegistry, candidate: ModelVersion, comparison: Comparison,
         min_ess: float = MIN_ESS) -> ModelVersion:
    """Promote ``candidate`` if its estimate beats the champion's on the holdout; else raise
    :class:`PromotionRefused` with the numbers."""
    if comparison.ess < min_ess:
        raise PromotionRefused(
            f"refused: {candidate.name} {candidate.version} has an effective sample size of "
            f"{comparison.ess:.1f} on {comparison.n} holdout decisions (needs {min_ess:g}): "
            "too little logged support to judge it; the champion stays; judge it online in "
            f"a champion/challenger experiment{_EXPERIMENT_HINT}")
    low, high = comparison.challenger_ci
    if not low > comparison.champion_value:
        # also when the champion is the rule policy, which the registry does not hold
        online = ("; surely worse: not worth an experiment" if high < comparison.champion_value
                  else f"; judge it online in a champion/challenger experiment"
                  f"{_EXPERIMENT_HINT}")
        raise PromotionRefused(
            f"refused: candidate {candidate.name} {candidate.version} has {METRIC}="
            f"{comparison.challenger_value:.4f} (95% interval {low:.4f} .. {high:.4f}), not "
            f"surely better than the champion's {comparison.champion_value:.4f} on the same "
            f"{comparison.n} holdout decisions; the champion stays{online}")
    return registry.promote(candidate.name, candidate.version, metric=METRIC,
                            champion_score=comparison.champion_value)


_EXPERIMENT_HINT = " (python -m pipelines.retrain --experiment NAME judges it)"


def _policy_id(arm: Arm, champion: str) -> str:
    """The policy an arm decides with, as ``name:version`` or the rule's id."""
    if arm.policy_version is None:
        return champion
    if arm.policy_version == RULES:
        return RULE_POLICY
    name, _, number = arm.policy_version.rpartition(":")
    return f"{name or POLICY_MODEL}:{number}"


def gate_experiment(registry: ModelRegistry, experiment: Experiment, result: ExperimentReport,
                    home: str | Path) -> dict[str, Any]:
    """Judge a champion/challenger experiment and conclude it.

    The control arm must decide with the current champion (else the experiment says nothing
    about beating it). Among the other arms deciding with a registry version of the policy,
    those the always-valid test shows better on the primary metric, with no guardrail
    breached and not stopped, qualify; the one with the largest lift is promoted through
    :meth:`ModelRegistry.promote`, with the experiment's numbers kept as evidence. An
    experiment without such an arm raises :class:`PromotionRefused` with the numbers and
    keeps running (more decisions may yet decide it). Either way a decided experiment (a
    winner, or every challenger surely worse or stopped) is recorded as concluded in the
    experiment's state file, and serving stops routing customers to its arms.
    """
    champion = champion_id(registry)
    control = experiment.arm(experiment.control)
    if _policy_id(control, champion) != champion:
        raise PromotionRefused(
            f"experiment {experiment.name}: its control arm {control.name!r} decides with "
            f"{_policy_id(control, champion)}, not the champion {champion}; a win over it "
            "says nothing about the champion")
    primary = {c.arm: c for c in result.comparisons if c.role == "primary"}
    stopped = {a.arm for a in result.arms if a.stopped}  # a guardrail breach stops an arm
    summary = {a.arm: a for a in result.arms}
    verdicts, winners = {}, []
    for arm in experiment.arms:
        if arm.name == control.name:
            continue
        policy = _policy_id(arm, champion)
        c = primary[arm.name]
        verdicts[arm.name] = (f"{arm.name} ({policy}, n={summary[arm.name].n}): "
                              f"{c.metric} {c.difference:+.4f} vs {control.name} "
                              f"(always-valid CI {c.ci_low:+.4f} .. {c.ci_high:+.4f}) "
                              f"{c.verdict}")
        if arm.name in stopped:
            verdicts[arm.name] += ", stopped by a guardrail"
        elif c.verdict == "better" and policy.startswith(f"{POLICY_MODEL}:"):
            winners.append((c.difference, arm.name, policy))
    n_control = summary[control.name].n
    facts = "; ".join(verdicts.values()) + f"; control {control.name} n={n_control}"
    if not winners:
        decided = all(primary[a].verdict == "worse" or a in stopped for a in verdicts)
        if decided:
            record_conclusion(home, experiment.name, None, facts)
        raise PromotionRefused(
            f"experiment {experiment.name}: no challenger surely better on "
            f"{experiment.primary_metric} ({facts}); the champion {champion} stays"
            + ("; the experiment is concluded" if decided else "; it keeps running"))
    lift, arm, policy = max(winners)
    version = policy.rpartition(":")[2]
    rate = summary[control.name].rates.get(experiment.primary_metric, (math.nan,))[0]
    registry.promote(POLICY_MODEL, version, evidence={
        "experiment": experiment.name, "arm": arm, "metric": experiment.primary_metric,
        "lift": lift, "control_rate": rate, "verdicts": verdicts})
    record_conclusion(home, experiment.name, arm, facts, promoted=policy)
    return {"promoted": policy, "arm": arm, "lift": lift, "verdicts": verdicts}


def champion_id(registry: ModelRegistry) -> str:
    """The serving champion's id: ``engagement_policy:vNNNN``, or the rule's when the
    registry holds no champion policy."""
    try:
        v = registry.champion(POLICY_MODEL)
    except UserError:
        return RULE_POLICY
    return f"{v.name}:{v.version}"
