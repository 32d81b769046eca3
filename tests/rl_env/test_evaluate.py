"""Evaluation: same customers and seeds for every policy, intervals, paired uplift, the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from ddso.errors import UserError
from rl_env.cli import add_rl_commands
from rl_env.cohort import run_cohort
from rl_env.evaluate import (
    METRICS,
    Outcomes,
    baseline_policies,
    evaluate,
    format_report,
    run_episodes,
    summarize,
    uplift,
)
from rl_env.policies import BusinessAsUsual, NoContact, RandomMasked

pytestmark = pytest.mark.unit


def test_run_episodes_matches_the_cohort_runner(small_config, small_pool):
    policy = BusinessAsUsual(small_pool.programs, small_config.horizon_days)
    out = run_episodes(policy, small_config, small_pool, 1_000, seed=5)
    cohort = run_cohort(small_config, policy, customers=1_000, seed=5, pool=small_pool)
    assert out.enrolled.sum() == cohort["enrolled"]
    assert out.graduated.sum() == cohort["graduated"]
    assert out.contacts.sum() == cohort["contacts"]
    assert out.returns.mean() == pytest.approx(cohort["mean_return"])


def test_fixed_seeds_make_runs_repeatable(small_config, small_pool):
    a, b = (run_episodes(RandomMasked(0.05), small_config, small_pool, 500, seed=1)
            for _ in range(2))
    for name in METRICS:
        np.testing.assert_array_equal(a.metric(name), b.metric(name))


def test_no_contact_never_contacts_or_converts(small_config, small_pool):
    out = run_episodes(NoContact(), small_config, small_pool, 500, seed=0)
    assert out.contacts.sum() == 0 and out.enrolled.sum() == 0


def _outcomes(**arrays) -> Outcomes:
    n = len(next(iter(arrays.values())))
    base = {k: np.zeros(n, bool) for k in ("enrolled", "graduated", "churned", "complained")}
    base.update(contacts=np.zeros(n, np.int64), returns=np.zeros(n))
    base.update(arrays)
    return Outcomes(**base, steps=1, wall_s=0.0)


def test_intervals_contain_the_estimate_and_uplift_is_the_paired_difference():
    rng = np.random.default_rng(0)
    b = _outcomes(enrolled=rng.random(4_000) < 0.01, returns=rng.normal(0, 1, 4_000))
    p = _outcomes(enrolled=b.enrolled | (rng.random(4_000) < 0.01),
                  returns=b.returns + 0.1)
    s = summarize(p)
    for name in METRICS:
        assert s[name]["low"] <= s[name]["value"] <= s[name]["high"]
    u = uplift(p, b)
    assert u["conversion"]["diff"] == pytest.approx(p.enrolled.mean() - b.enrolled.mean())
    assert u["conversion"]["low"] > 0  # every customer converted under b converts under p
    assert u["conversion"]["relative"] == pytest.approx(p.enrolled.mean() / b.enrolled.mean() - 1)
    # Paired: a constant shift has no spread, whatever the spread of the returns.
    assert u["return"]["diff"] == pytest.approx(0.1)
    assert u["return"]["high"] - u["return"]["low"] < 1e-9
    assert u["return"]["relative"] is None


def test_evaluate_reports_every_policy_and_uplift_against_business_as_usual(small_config,
                                                                           small_pool):
    policies = baseline_policies(small_config, small_pool,
                                 names=("no_contact", "business_as_usual", "linucb"))
    report = evaluate(policies, small_config, small_pool, 800, seed=2)
    assert set(report["policies"]) == {"no_contact", "business_as_usual", "linucb"}
    assert set(report["uplift"]) == {"no_contact", "linucb"}
    assert report["uplift"]["no_contact"]["contacts_per_customer"]["relative"] == -1.0
    json.dumps(report)  # plain data
    text = format_report(report)
    assert "linucb" in text and "uplift" in text and "conversion" in text


def test_unknown_baseline_is_a_user_error(small_config, small_pool):
    with pytest.raises(UserError, match="greedy"):
        baseline_policies(small_config, small_pool, names=("greedy",))


def _cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddso")
    add_rl_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_evaluate_writes_json(tmp_path, capsys):
    path = tmp_path / "eval.json"
    args = _cli().parse_args(["rl", "evaluate", "--episodes", "300", "--seed", "4",
                              "--policies", "business_as_usual,random", "--json", str(path)])
    assert args.func(args) == 0
    report = json.loads(path.read_text())
    assert report["episodes"] == 300 and report["seed"] == 4 and report["pool_seed"] == 1
    assert set(report["policies"]) == {"business_as_usual", "random"}
    assert "business_as_usual" in capsys.readouterr().out


def test_cli_policy_from_an_empty_registry_is_a_user_error(tmp_path):
    args = _cli().parse_args(["rl", "evaluate", "--episodes", "10", "--policies", "random",
                              "--policy-from", str(tmp_path / "registry")])
    with pytest.raises(UserError, match="engagement_policy"):
        args.func(args)
