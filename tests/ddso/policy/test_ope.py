"""Off-policy estimators on a synthetic bandit whose true policy value is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from ddso.errors import NotFittedError, UserError
from ddso.policy.offpolicy_learning import (
    ranking_action_dist,
    thompson_action_dist,
    top_m_action_dist,
    uniform_action_dist,
)
from ddso.policy.ope import (
    Estimate,
    LoggedBandit,
    LogisticRewardModel,
    bootstrap,
    cross_fit_rewards,
    dm,
    dr,
    effective_sample_size,
    estimate_all,
    importance_weights,
    ips,
    snips,
)

pytestmark = pytest.mark.unit

N_ACTIONS = 4


def softmax(scores: np.ndarray) -> np.ndarray:
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def synthetic(n: int, seed: int = 0, n_positions: int = 1):
    """A log from a stochastic logging policy, the true click probabilities q(x, a[, k]) and a
    target policy pi_e different from the logging one. Rewards follow a logistic model of the
    same additive form as LogisticRewardModel, so DM is well specified."""
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, 3))
    logit = (context @ np.array([0.8, -0.5, 0.3]))[:, None] + np.array([-2.0, -1.0, -1.5, -0.5])
    logit = logit[:, :, None] + np.linspace(0, -0.6, n_positions)[None, None, :]
    q = 1 / (1 + np.exp(-logit))
    logging = softmax(context @ rng.normal(size=(3, N_ACTIONS)))
    target = softmax(2 * context @ rng.normal(size=(3, N_ACTIONS)))
    action = (logging.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    position = rng.integers(0, n_positions, size=n)
    rows = np.arange(n)
    reward = (rng.random(n) < q[rows, action, position]).astype(float)
    data = LoggedBandit(context=context, action=action, reward=reward,
                        propensity=logging[rows, action], n_actions=N_ACTIONS,
                        position=position if n_positions > 1 else None, n_positions=n_positions)
    target = np.repeat(target[:, :, None], n_positions, axis=2)
    truth = float(np.mean(np.einsum("ia,ia->i", target[rows, :, position], q[rows, :, position])))
    if n_positions == 1:
        return data, q[:, :, 0], target[:, :, 0], truth
    return data, q, target, truth


@pytest.fixture(scope="module")
def big():
    return synthetic(50_000)


@pytest.fixture(scope="module")
def big_cross_fit(big):
    data = big[0]
    return cross_fit_rewards(data, n_folds=3, seed=0, C=1.0)


def test_ips_snips_dr_are_unbiased_within_a_few_standard_errors(big, big_cross_fit):
    data, _, target, truth = big
    for name, estimate in estimate_all(data, target, big_cross_fit).items():
        if name != "dm":
            assert abs(estimate.value - truth) < 4 * estimate.se, (name, estimate, truth)


def test_dm_with_a_well_specified_model_is_close_and_has_the_smallest_se(big, big_cross_fit):
    data, _, target, truth = big
    estimates = estimate_all(data, target, big_cross_fit)
    assert abs(estimates["dm"].value - truth) < 0.01
    assert estimates["dm"].se < min(estimates[k].se for k in ("ips", "snips", "dr"))


def test_dr_has_lower_variance_than_ips_with_a_good_model(big, big_cross_fit):
    data, _, target, _ = big
    assert dr(data, target, big_cross_fit).se < ips(data, target).se


def test_dm_with_the_true_rewards_is_the_true_value(big):
    data, q, target, truth = big
    assert dm(data, target, q).value == pytest.approx(truth, rel=1e-12)


def test_estimators_with_positions_are_unbiased():
    data, q, target, truth = synthetic(30_000, seed=1, n_positions=3)
    assert dm(data, target, q).value == pytest.approx(truth, rel=1e-12)
    for estimate in (ips(data, target), snips(data, target), dr(data, target, q)):
        assert abs(estimate.value - truth) < 4 * estimate.se


def test_evaluating_the_logging_policy_gives_the_mean_reward():
    data, _, _, _ = synthetic(2_000)
    uniform_log = LoggedBandit(context=data.context, action=data.action, reward=data.reward,
                               propensity=np.full(data.n, 1 / N_ACTIONS), n_actions=N_ACTIONS)
    uniform = np.broadcast_to(uniform_action_dist(N_ACTIONS)[:, 0], (data.n, N_ACTIONS))
    assert ips(uniform_log, uniform).value == pytest.approx(data.reward.mean())
    assert snips(uniform_log, uniform).value == pytest.approx(data.reward.mean())


def test_snips_is_self_normalised():
    data, _, target, _ = synthetic(2_000)
    constant = LoggedBandit(context=data.context, action=data.action,
                            reward=np.full(data.n, 0.3), propensity=data.propensity,
                            n_actions=N_ACTIONS)
    assert snips(constant, target).value == pytest.approx(0.3)
    assert snips(constant, target).se == pytest.approx(0.0, abs=1e-12)
    assert ips(constant, target).value != pytest.approx(0.3)
    # Halving every propensity doubles IPS's weights; SNIPS divides the factor out.
    halved = LoggedBandit(context=data.context, action=data.action, reward=data.reward,
                          propensity=data.propensity / 2, n_actions=N_ACTIONS)
    assert ips(halved, target).value == pytest.approx(2 * ips(data, target).value)
    assert snips(halved, target).value == pytest.approx(snips(data, target).value)


def test_dr_reduces_to_dm_without_weights_and_to_ips_without_a_model():
    data, q, target, _ = synthetic(2_000)
    # A policy that never takes the logged action: every importance weight is 0.
    never_logged = np.full((data.n, N_ACTIONS), 1 / (N_ACTIONS - 1))
    never_logged[np.arange(data.n), data.action] = 0.0
    assert np.all(importance_weights(data, never_logged) == 0)
    assert dr(data, never_logged, q).value == pytest.approx(dm(data, never_logged, q).value)
    zero = np.zeros_like(q)
    assert dr(data, target, zero).value == pytest.approx(ips(data, target).value)
    assert dr(data, target, zero).se == pytest.approx(ips(data, target).se)
    with pytest.raises(UserError, match="SNIPS is undefined"):
        snips(data, never_logged)


def test_estimate_ci_and_effective_sample_size():
    estimate = Estimate(value=0.5, se=0.1, n=100)
    low, high = estimate.ci()
    assert (low, high) == pytest.approx((0.5 - 0.196, 0.5 + 0.196), abs=1e-3)
    assert estimate.ci(0.5)[1] - estimate.ci(0.5)[0] < high - low
    with pytest.raises(UserError, match="level"):
        estimate.ci(1.0)
    assert effective_sample_size(np.ones(50)) == pytest.approx(50)
    assert effective_sample_size(np.r_[np.zeros(49), 3.0]) == pytest.approx(1)


def test_reward_model_predicts_every_action_like_the_fitted_logistic_regression():
    data, q, _, _ = synthetic(20_000, seed=2)
    model = LogisticRewardModel(C=10.0).fit(data)
    predicted = model.predict(data)
    assert predicted.shape == (data.n, N_ACTIONS, 1)
    # The additive form is the true one here, so the fit is close to the true probabilities.
    assert np.abs(predicted[:, :, 0] - q).mean() < 0.02
    with pytest.raises(NotFittedError, match="call fit"):
        LogisticRewardModel().predict(data)
    wider = LoggedBandit(context=np.c_[data.context, data.context], action=data.action,
                         reward=data.reward, propensity=data.propensity, n_actions=N_ACTIONS)
    with pytest.raises(UserError, match="fitted on"):
        model.predict(wider)


def test_reward_model_uses_action_features():
    rng = np.random.default_rng(3)
    n = 20_000
    affinity = rng.integers(0, 2, size=(n, N_ACTIONS)).astype(float)
    action = rng.integers(0, N_ACTIONS, size=n)
    clicked = affinity[np.arange(n), action] == 1
    reward = (rng.random(n) < np.where(clicked, 0.5, 0.05)).astype(float)
    data = LoggedBandit(context=np.zeros((n, 1)), action=action, reward=reward,
                        propensity=np.full(n, 1 / N_ACTIONS), n_actions=N_ACTIONS,
                        action_features=affinity)
    predicted = LogisticRewardModel(C=10.0).fit(data).predict(data)[:, :, 0]
    assert predicted[affinity == 1].mean() == pytest.approx(0.5, abs=0.03)
    assert predicted[affinity == 0].mean() == pytest.approx(0.05, abs=0.02)
    without = LoggedBandit(context=data.context, action=action, reward=reward,
                           propensity=data.propensity, n_actions=N_ACTIONS)
    with pytest.raises(UserError, match="action features"):
        LogisticRewardModel(C=10.0).fit(data).predict(without)


def test_reward_model_needs_both_outcomes():
    data, _, _, _ = synthetic(500)
    no_clicks = LoggedBandit(context=data.context, action=data.action,
                             reward=np.zeros(data.n), propensity=data.propensity,
                             n_actions=N_ACTIONS)
    with pytest.raises(UserError, match="both 0 and 1"):
        LogisticRewardModel().fit(no_clicks)


def test_cross_fit_shapes_and_fold_count():
    data, _, _, _ = synthetic(3_000)
    assert cross_fit_rewards(data, n_folds=2).shape == (data.n, N_ACTIONS)
    with_positions = synthetic(3_000, n_positions=2)[0]
    assert cross_fit_rewards(with_positions).shape == (data.n, N_ACTIONS, 2)
    with pytest.raises(UserError, match="n_folds"):
        cross_fit_rewards(data, n_folds=1)


def test_bootstrap_is_seeded_and_shares_resamples_across_statistics():
    values = np.arange(100.0)
    first = bootstrap(lambda rows: {"mean": values[rows].mean(), "max": values[rows].max()},
                      n=100, n_boot=20, seed=7)
    again = bootstrap(lambda rows: {"mean": values[rows].mean()}, n=100, n_boot=20, seed=7)
    assert first["mean"].shape == (20,) and set(first) == {"mean", "max"}
    np.testing.assert_array_equal(first["mean"], again["mean"])
    other = bootstrap(lambda rows: {"mean": values[rows].mean()}, n=100, n_boot=20, seed=8)
    assert not np.array_equal(first["mean"], other["mean"])
    with pytest.raises(UserError, match="n_boot"):
        bootstrap(lambda rows: {}, n=10, n_boot=0)


def test_take_resamples_every_per_row_field():
    data, _, _, _ = synthetic(100, n_positions=2)
    rows = np.array([5, 5, 0])
    taken = data.take(rows)
    assert taken.n == 3 and taken.n_positions == 2
    np.testing.assert_array_equal(taken.position, data.position[rows])
    np.testing.assert_array_equal(taken.context, data.context[rows])


# --- input validation: every error names the field --------------------------------------------


def log(**overrides):
    fields = {"context": np.zeros((3, 2)), "action": np.array([0, 1, 2]),
              "reward": np.array([0.0, 1.0, 0.0]), "propensity": np.array([0.5, 0.25, 1.0]),
              "n_actions": 3}
    return LoggedBandit(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"propensity": np.array([0.5, 0.0, 1.0])}, r"propensity\[1\] = 0 is not in \(0, 1\]"),
        ({"propensity": np.array([0.5, 1.5, 1.0])}, r"propensity\[1\] = 1.5"),
        ({"propensity": np.array([0.5, np.nan, 1.0])}, r"propensity\[1\] = nan is not finite"),
        ({"propensity": np.array([0.5, 0.5])}, r"propensity has shape \(2,\); expected \(3,\)"),
        ({"action": np.array([0, 1, 3])}, r"action\[2\] = 3 is outside \[0, n_actions = 3\)"),
        ({"action": np.array([0, 1, -1])}, r"action\[2\] = -1"),
        ({"action": np.array([0.0, 1.5, 2.0])}, r"action must hold integer indices"),
        ({"context": np.zeros((4, 2))}, r"context has shape \(4, 2\); expected \(n, d\)"),
        ({"context": np.array([[0.0, 0.0], [0.0, np.inf], [0.0, 0.0]])},
         r"context\[1\] is not finite"),
        ({"context": np.array([["a", "b"]] * 3)}, r"context must be numeric"),
        ({"reward": np.array([0.0, np.inf, 0.0])}, r"reward\[1\] = inf is not finite"),
        ({"n_actions": 0}, r"n_actions=0"),
        ({"position": np.array([0, 1, 2]), "n_positions": 2},
         r"position\[2\] = 2 is outside \[0, n_positions = 2\)"),
        ({"n_positions": 3}, r"n_positions=3 but position is None"),
        ({"action_features": np.zeros((3, 2))}, r"action_features has shape \(3, 2, 1\)"),
    ],
)
def test_bad_log_fields_are_named(overrides, message):
    with pytest.raises(UserError, match=message):
        log(**overrides)


def test_bad_action_dist_and_reward_hat_are_named():
    data = log()
    good = np.full((3, 3), 1 / 3)
    with pytest.raises(UserError, match=r"action_dist has shape \(3, 4\); expected \(3, 3\)"):
        ips(data, np.full((3, 4), 0.25))
    with pytest.raises(UserError, match=r"action_dist\[0, :, 0\] sums to 0.9"):
        ips(data, np.array([[0.3, 0.3, 0.3], [0.2, 0.4, 0.4], [0.2, 0.4, 0.4]]))
    with pytest.raises(UserError, match="action_dist has negative probabilities"):
        snips(data, np.array([[1.2, -0.2, 0.0]] * 3))
    with pytest.raises(UserError, match=r"reward_hat has shape \(3, 2\)"):
        dr(data, good, np.zeros((3, 2)))
    with pytest.raises(UserError, match="reward_hat has NaN"):
        dm(data, good, np.full((3, 3), np.nan))
    positioned = log(position=np.array([0, 1, 0]), n_positions=2)
    with pytest.raises(UserError, match=r"expected \(3, 3, 2\) \(rows, actions, positions\)"):
        ips(positioned, good)


# --- policies as action distributions ---------------------------------------------------------


def test_thompson_action_dist_is_a_seeded_distribution_per_position():
    alpha, beta = np.array([50.0, 5.0, 5.0, 1.0]), np.array([50.0, 95.0, 95.0, 99.0])
    dist = thompson_action_dist(alpha, beta, n_positions=2, n_sim=20_000, seed=1)
    assert dist.shape == (4, 2)
    np.testing.assert_allclose(dist.sum(axis=0), 1.0)
    assert np.all(dist.sum(axis=1) <= 1.0)  # an action fills at most one position
    assert dist[0, 0] > 0.99  # mean 0.5 against means of 0.05 and 0.01
    assert dist[1, 1] == pytest.approx(0.5, abs=0.02)  # two equal runners-up
    np.testing.assert_array_equal(
        dist, thompson_action_dist(alpha, beta, n_positions=2, n_sim=20_000, seed=1))
    with pytest.raises(UserError, match="n_positions=5"):
        thompson_action_dist(alpha, beta, n_positions=5)
    with pytest.raises(UserError, match="positive"):
        thompson_action_dist(-alpha, beta)


def test_ranking_and_top_m_policies():
    scores = np.array([[0.1, 0.4, 0.3, 0.2], [0.9, 0.1, 0.5, 0.5]])
    ranking = ranking_action_dist(scores, n_positions=2)
    assert ranking.shape == (2, 4, 2)
    assert ranking[0, 1, 0] == 1 and ranking[0, 2, 1] == 1 and ranking[0].sum() == 2
    assert ranking[1, 0, 0] == 1 and ranking[1, 2, 1] == 1  # tie goes to the lower index
    top = top_m_action_dist(scores, top_m=2, n_positions=3)
    np.testing.assert_allclose(top[0, :, 2], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(top.sum(axis=1), 1.0)
    with pytest.raises(UserError, match="top_m=5"):
        top_m_action_dist(scores, top_m=5)
    np.testing.assert_allclose(uniform_action_dist(4, 2), 0.25)
