"""The always-valid test: its error rate holds under repeated looks, where a z-test's does not."""

import math

import numpy as np
import pytest

from ddso.sequential import (
    fixed_horizon_p_value,
    mean_interval,
    msprt,
    msprt_path,
    wilson_interval,
)

pytestmark = pytest.mark.unit

ALPHA = 0.05
MIXING_SD = 0.05


def experiments(rng, reps: int, n: int, control: float, treatment: float):
    """``reps`` simulated A/B tests of ``n`` decisions each, half to each arm at random."""
    for _ in range(reps):
        treated = rng.random(n) < 0.5
        y = (rng.random(n) < np.where(treated, treatment, control)).astype(float)
        yield treated, y


def test_false_positives_stay_below_alpha_under_peeking_where_a_z_test_does_not():
    """500 A/A tests of 4,000 decisions, looked at 50 times each (every 80 decisions), stopped
    at the first p <= 0.05."""
    rng = np.random.default_rng(7)
    reps, n, looks = 500, 4000, 50
    peeks = np.linspace(n / looks, n, looks).astype(int)
    msprt_peeks = msprt_all = naive = 0
    for treated, y in experiments(rng, reps, n, 0.10, 0.10):
        _, p, _, _ = msprt_path(treated, y, alpha=ALPHA, mixing_sd=MIXING_SD)
        msprt_peeks += bool((p[peeks - 1] <= ALPHA).any())
        msprt_all += bool(p[-1] <= ALPHA)  # a look after every single decision
        naive += any(fixed_horizon_p_value(treated[:m], y[:m]) <= ALPHA for m in peeks)
    rates = {"msprt_50_looks": msprt_peeks / reps, "msprt_every_decision": msprt_all / reps,
             "z_test_50_looks": naive / reps}
    print(f"false-positive rates over {reps} A/A tests: {rates}")
    # A binomial(500, 0.05) exceeds 0.05 + 2.5 sd = 0.074 with probability < 1 %.
    assert rates["msprt_every_decision"] <= ALPHA + 0.025
    assert rates["msprt_50_looks"] <= rates["msprt_every_decision"]
    assert rates["z_test_50_looks"] > 3 * ALPHA  # repeated fixed-horizon tests: ~0.3


def test_a_real_effect_is_detected_and_covered():
    """10 % vs 13 % conversion, 10,000 decisions: found nearly always; the interval holds the
    true difference at least 1 - alpha of the time."""
    rng = np.random.default_rng(11)
    reps, found, covered = 200, 0, 0
    for treated, y in experiments(rng, reps, 10_000, 0.10, 0.13):
        r = msprt(treated, y, alpha=ALPHA, mixing_sd=MIXING_SD)
        found += r.p_value <= ALPHA
        covered += r.ci_low <= 0.03 <= r.ci_high
        assert (r.p_value <= ALPHA) == (r.ci_low > 0 or r.ci_high < 0)
    print(f"power {found / reps:.3f}, coverage {covered / reps:.3f}")
    assert found / reps >= 0.9
    assert covered / reps >= 1 - ALPHA - 0.03


def test_the_p_value_only_falls_and_the_interval_only_narrows():
    rng = np.random.default_rng(3)
    treated, y = next(experiments(rng, 1, 3000, 0.2, 0.25))
    theta, p, low, high = msprt_path(treated, y, alpha=ALPHA, mixing_sd=MIXING_SD)
    assert (p[1:] <= p[:-1]).all()
    assert (low[1:] >= low[:-1]).all() and (high[1:] <= high[:-1]).all()
    assert p[0] == 1.0 and math.isinf(low[0]) and math.isinf(high[0])  # before min_per_arm
    last = msprt(treated, y, alpha=ALPHA, mixing_sd=MIXING_SD)
    assert last.p_value == p[-1] and last.difference == pytest.approx(theta[-1])
    assert last.n_treatment + last.n_control == 3000


def test_no_data_and_constant_outcomes_decide_nothing():
    r = msprt(np.array([], bool), np.array([]), mixing_sd=MIXING_SD)
    assert r.p_value == 1.0 and math.isinf(r.ci_low) and math.isnan(r.difference)
    treated = np.arange(1000) % 2 == 0
    r = msprt(treated, np.zeros(1000), mixing_sd=MIXING_SD)
    assert r.p_value == 1.0 and r.difference == 0.0
    with pytest.raises(ValueError, match="alpha"):
        msprt(treated, np.zeros(1000), alpha=1.5, mixing_sd=MIXING_SD)
    with pytest.raises(ValueError, match="nan"):
        msprt(treated, np.full(1000, np.nan), mixing_sd=MIXING_SD)


def test_wilson_and_mean_intervals():
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0
    mean, low, high = mean_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and high - mean == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2,
                                                        rel=1e-3)
    assert math.isnan(mean_interval(np.array([]))[0])
