"""BG/NBD: a true optimum on CDNOW near the published parameters, recovery on simulated data."""

from __future__ import annotations

import numpy as np
import pytest

from ddso.data.real import cdnow_calibration_holdout, load_cdnow
from ddso.errors import NotFittedError, UserError
from ddso.models.bgnbd import BetaGeoFitter, BGNBDParams, log_likelihood, simulate

pytestmark = pytest.mark.unit

PUBLISHED = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)  # FHL 2005, CDNOW 1/10 sample


@pytest.fixture(scope="module")
def cdnow():
    summary = cdnow_calibration_holdout(load_cdnow())
    args = (summary["frequency_cal"], summary["recency_cal"], summary["T_cal"])
    return summary, args, BetaGeoFitter().fit(*args)


def test_cdnow_fit_is_near_published_and_a_true_optimum(cdnow):
    _, args, model = cdnow
    for fitted, published in zip(model.params_, PUBLISHED, strict=True):
        assert published / 1.5 < fitted < published * 1.5
    ll_fit = log_likelihood(model.params_, *args).sum()
    assert ll_fit == pytest.approx(model.log_likelihood_)
    assert ll_fit >= log_likelihood(PUBLISHED, *args).sum()
    # Local optimum: no small step in any log-parameter improves the likelihood.
    for i in range(4):
        for step in (-0.01, 0.01):
            moved = np.array(model.params_) * np.exp(step * (np.arange(4) == i))
            assert ll_fit >= log_likelihood(tuple(moved), *args).sum()


def test_cdnow_predictions_are_sane(cdnow):
    summary, args, model = cdnow
    p = model.p_alive(*args)
    assert np.all((p > 0) & (p <= 1))
    assert np.all(p[summary["frequency_cal"].to_numpy() == 0] == 1.0)
    expected = model.expected_transactions(summary["duration_holdout"], *args)
    assert np.all(expected >= 0)
    actual = summary["frequency_holdout"].sum()
    assert 0.7 * actual < expected.sum() < 1.3 * actual
    # More recent buyers (same x, T) are expected to buy more.
    e = model.expected_transactions(39.0, [3, 3], [10.0, 30.0], [38.0, 38.0])
    assert e[1] > e[0]


def test_expected_transactions_is_zero_for_zero_horizon_and_matches_unconditional():
    model = BetaGeoFitter()
    model.params_ = PUBLISHED
    assert model.expected_transactions(0.0, [0, 2], [0.0, 5.0], [30.0, 30.0]) == \
        pytest.approx([0.0, 0.0])
    # For a brand-new customer (x = t_x = T = 0) the conditional equals E[X(t)].
    cond = model.expected_transactions(20.0, 0, 0.0, 0.0)
    assert cond == pytest.approx(model.expected_unconditional(20.0))


def test_recovers_simulated_parameters():
    truth = BGNBDParams(r=0.5, alpha=6.0, a=0.7, b=2.5)
    T = np.random.default_rng(3).uniform(25.0, 40.0, 6000)
    frequency, recency = simulate(truth, T, seed=4)
    model = BetaGeoFitter().fit(frequency, recency, T)
    r, alpha, a, b = model.params_
    assert r == pytest.approx(truth.r, rel=0.25)
    assert alpha == pytest.approx(truth.alpha, rel=0.3)
    assert a == pytest.approx(truth.a, rel=0.5)
    assert b == pytest.approx(truth.b, rel=0.6)
    assert model.log_likelihood_ >= log_likelihood(truth, frequency, recency, T).sum()


def test_errors():
    with pytest.raises(NotFittedError):
        BetaGeoFitter().p_alive([1], [1.0], [2.0])
    with pytest.raises(UserError):
        BetaGeoFitter().fit([1], [3.0], [2.0])  # recency > T
    with pytest.raises(UserError):
        BetaGeoFitter().fit([0], [1.0], [2.0])  # no repeats but recency > 0
