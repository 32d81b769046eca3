"""Champion/challenger by off-policy evaluation on the champion's logged decisions."""

import json

import numpy as np
import pandas as pd
import pytest

from ddso.policy.challenger import compare, holdout
from ddso.policy.decide import RULE_POLICY
from tests.ddso.policy.logged_world import CANDIDATES, conversion, logged

pytestmark = pytest.mark.unit


def test_the_logging_policy_as_challenger_is_valued_at_its_mean_reward():
    rows = logged(2000, seed=3).assign(decision=lambda f: f["decision"].map(json.loads))
    result = compare(rows, lambda features, candidates: ("email", "P1"))
    assert result.challenger_value == pytest.approx(result.champion_value, abs=1e-12)
    assert result.ess == pytest.approx(len(rows))


def test_a_better_policy_is_estimated_near_its_true_value():
    rows = logged(6000, seed=4).assign(decision=lambda f: f["decision"].map(json.loads))

    def best(features, candidates):
        return ("email", "P2") if features["x"] > 0 else ("email", "P1")

    result = compare(rows, best)
    # the truth, served with the log's epsilon (0.3) over the three candidates
    x = np.random.default_rng(9).normal(size=200_000)
    greedy = np.where(x > 0, conversion(("email", "P2"), x), conversion(("email", "P1"), x))
    uniform = np.mean([conversion(tuple(c), x) for c in CANDIDATES], axis=0)
    truth = float(np.mean(0.7 * greedy + 0.3 * uniform))
    low, high = result.challenger_ci
    assert low <= truth <= high and result.challenger_value > result.champion_value + 0.03


def test_the_holdout_is_the_champions_labelled_decisions_only():
    ours = logged(30, seed=5, start=1000.0)
    theirs = logged(20, seed=6, policy="engagement_policy:v0001")
    records = pd.concat([ours, theirs], ignore_index=True)
    labels = records[["decision_id", "reward"]].iloc[:28]  # the rest are not labelled yet
    rows = holdout(records.drop(columns="reward"), labels, RULE_POLICY, since=1000.0 + 60 * 5)
    assert list(rows["decision_id"]) == [f"5-{i}" for i in range(5, 28)]
    np.testing.assert_array_equal(rows["reward"].to_numpy(), ours["reward"].to_numpy()[5:28])


# --- judging an experiment ----------------------------------------------------------------------


def _registry_with_candidates(tmp_path, n: int = 2):
    from ddso.models.registry import ModelRegistry
    from ddso.policy.bandit import LinearBandit, register_candidate

    registry = ModelRegistry(tmp_path / "registry")
    bandit = LinearBandit(["x"]).learn(np.array([[0.0], [1.0]]), ["email:P1", "email:P2"],
                                       np.array([0.0, 1.0]))
    for _ in range(n):
        register_candidate(registry, "engagement_policy", bandit, {})
    return registry


def test_an_experiment_won_by_the_challenger_promotes_it_and_concludes(tmp_path):
    from ddso.experiment_report import report
    from ddso.experiments import ExperimentRouter, read_state
    from ddso.policy.challenger import gate_experiment
    from tests.ddso.test_experiments import ab, labels_frame, pseudonyms

    registry = _registry_with_candidates(tmp_path)
    experiment = ab()  # control: the champion (here the rule); challenger: v0002
    result = report(experiment, labels_frame(12000, enrol=(0.05, 0.08, 0.05), seed=3))
    out = gate_experiment(registry, experiment, result, tmp_path)
    assert out["promoted"] == "engagement_policy:v0002" and out["arm"] == "challenger"
    assert "better" in out["verdicts"]["challenger"]
    assert registry.champion("engagement_policy").version == "v0002"
    entry = registry.history("engagement_policy")[-1]
    assert entry["evidence"]["experiment"] == "policy-ab" and entry["evidence"]["lift"] > 0.01
    concluded = read_state(tmp_path, "policy-ab")["concluded"]
    assert concluded["winner"] == "challenger"
    assert concluded["promoted"] == "engagement_policy:v0002"
    router = ExperimentRouter(experiment, tmp_path, refresh_s=0.0)
    assert all(router.route(p, 1.8e9) is None for p in pseudonyms(50))  # everyone: champion


def test_an_undecided_experiment_promotes_nothing_and_keeps_running(tmp_path):
    from ddso.experiment_report import report
    from ddso.experiments import read_state
    from ddso.models.registry import PromotionRefused
    from ddso.policy.challenger import gate_experiment
    from tests.ddso.test_experiments import ab, labels_frame

    registry = _registry_with_candidates(tmp_path)
    experiment = ab()
    result = report(experiment, labels_frame(3000, churn=(0.02, 0.02, 0.02), seed=5))
    with pytest.raises(PromotionRefused, match="no challenger surely better on enrolled.*"
                                               "it keeps running"):
        gate_experiment(registry, experiment, result, tmp_path)
    assert read_state(tmp_path, "policy-ab")["concluded"] is None
    with pytest.raises(Exception, match="no champion"):
        registry.champion("engagement_policy")


def test_an_experiment_whose_control_is_not_the_champion_proves_nothing(tmp_path):
    from ddso.experiment_report import report
    from ddso.experiments import Experiment
    from ddso.models.registry import PromotionRefused
    from ddso.policy.challenger import gate_experiment
    from tests.ddso.test_experiments import labels_frame

    registry = _registry_with_candidates(tmp_path)
    experiment = Experiment(name="policy-ab", control="champion", arms=[
        {"name": "champion", "share": 0.5, "policy_version": "v0001"},
        {"name": "challenger", "share": 0.3, "policy_version": "v0002"},
        {"name": "rules", "share": 0.2, "policy_version": "rules"}])
    result = report(experiment, labels_frame(12000, enrol=(0.05, 0.08, 0.05), seed=3))
    with pytest.raises(PromotionRefused, match="decides with engagement_policy:v0001, not the "
                                               "champion propensity_x_value"):
        gate_experiment(registry, experiment, result, tmp_path)
