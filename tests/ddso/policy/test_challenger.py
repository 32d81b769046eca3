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
