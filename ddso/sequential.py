"""Always-valid inference for experiments that are looked at whenever anyone likes.

A fixed-horizon z-test is valid once, at the sample size chosen in advance; recomputed after
every batch of decisions and stopped at the first p <= alpha, it rejects a true null far more
often than alpha (``tests/ddso/test_sequential.py`` measures both). :func:`msprt` is the
mixture sequential probability ratio test of Johari, Koomen, Pekelis and Walsh ("Always valid
inference: continuous monitoring of A/B tests", Operations Research 2022) for the difference
of two means, with the normal approximation they use for A/B tests:

    theta_n = mean_treatment - mean_control,  V_n = s_t^2 / n_t + s_c^2 / n_c
    Lambda_n = sqrt(V_n / (V_n + tau^2)) * exp(tau^2 theta_n^2 / (2 V_n (V_n + tau^2)))

``Lambda_n`` is the likelihood ratio of "the difference is drawn from N(0, tau^2)" against
"the difference is 0", a martingale under the null, so by Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha``. The always-valid p-value is the running minimum
of ``1 / Lambda_n`` over every prefix of the decisions in time order (every moment someone
could have looked), and the always-valid confidence interval is the running intersection
of ``theta_n +- sqrt(V_n (V_n + tau^2) / tau^2 * (2 log(1/alpha) + log((V_n + tau^2) / V_n)))``:
acting on either whenever one looks keeps the error rate at alpha.

``tau`` (the mixing standard deviation) is the size of effect the test is tuned to find
soonest; here it is ``mixing_sd`` standard deviations of the metric per decision (pooled over
both arms), so one default fits rates and revenue alike. Any ``tau`` keeps the guarantee;
only the power at a given effect size changes. Variances are plug-in estimates, so the
guarantee is asymptotic: prefixes with fewer than ``min_per_arm`` decisions in either arm
are not evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

DEFAULT_MIN_PER_ARM = 100


@dataclass(frozen=True)
class SequentialResult:
    """The always-valid test of ``treatment - control`` after all the decisions seen."""

    n_control: int
    n_treatment: int
    difference: float
    """The latest estimate of ``mean_treatment - mean_control`` (nan before any data)."""
    p_value: float
    """Always-valid p-value of "no difference" (1.0 until ``min_per_arm`` in each arm)."""
    ci_low: float
    ci_high: float
    """Always-valid ``1 - alpha`` confidence interval of the difference (infinite at first)."""


def msprt_path(
    treated: np.ndarray,
    y: np.ndarray,
    *,
    mixing_sd: float,
    alpha: float = 0.05,
    min_per_arm: int = DEFAULT_MIN_PER_ARM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """After each decision (in the order given): the difference, the always-valid p-value
    and the always-valid interval's ends, as arrays as long as ``y``.

    ``treated`` says which decisions are the treatment arm's (the rest are control's).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not mixing_sd > 0.0:
        raise ValueError(f"mixing_sd must be > 0, got {mixing_sd!r}")
    t = np.asarray(treated, dtype=bool)
    y = np.asarray(y, dtype=np.float64)
    if t.shape != y.shape or y.ndim != 1:
        raise ValueError(f"treated and y must be 1-d and alike, got {t.shape} and {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y holds nan or infinite values")
    c = ~t
    n1, n0 = np.cumsum(t), np.cumsum(c)
    s1, s0 = np.cumsum(np.where(t, y, 0.0)), np.cumsum(np.where(c, y, 0.0))
    q1, q0 = np.cumsum(np.where(t, y * y, 0.0)), np.cumsum(np.where(c, y * y, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        m1, m0 = s1 / n1, s0 / n0
        ss1 = np.maximum(q1 - n1 * m1 * m1, 0.0)  # sums of squared deviations
        ss0 = np.maximum(q0 - n0 * m0 * m0, 0.0)
        var_of_diff = ss1 / (n1 - 1) / n1 + ss0 / (n0 - 1) / n0
        tau2 = mixing_sd**2 * (ss1 + ss0) / (n1 + n0 - 2)
        theta = m1 - m0
        ok = (n1 >= max(min_per_arm, 2)) & (n0 >= max(min_per_arm, 2))
        ok &= (var_of_diff > 0) & (tau2 > 0)
        v = np.where(ok, var_of_diff, 1.0)
        tau2 = np.where(ok, tau2, 1.0)
        log_lambda = 0.5 * np.log(v / (v + tau2)) + tau2 * theta**2 / (2 * v * (v + tau2))
        p_now = np.where(ok, np.minimum(1.0, np.exp(-log_lambda)), 1.0)
        half = np.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((v + tau2) / v)))
        low = np.where(ok, theta - half, -np.inf)
        high = np.where(ok, theta + half, np.inf)
    return (
        theta,
        np.minimum.accumulate(p_now),
        np.maximum.accumulate(low),
        np.minimum.accumulate(high),
    )


def msprt(
    treated: np.ndarray,
    y: np.ndarray,
    *,
    mixing_sd: float,
    alpha: float = 0.05,
    min_per_arm: int = DEFAULT_MIN_PER_ARM,
) -> SequentialResult:
    """The always-valid test after the last decision (see the module docstring).

    The interval is the running intersection; should it ever come out empty (which happens
    with probability below alpha), the latest interval is reported instead.
    """
    theta, p, low, high = msprt_path(
        treated, y, alpha=alpha, mixing_sd=mixing_sd, min_per_arm=min_per_arm
    )
    t = np.asarray(treated, dtype=bool)
    if len(theta) == 0:
        return SequentialResult(0, 0, math.nan, 1.0, -math.inf, math.inf)
    lo, hi = float(low[-1]), float(high[-1])
    if lo > hi:
        lo, hi = _latest_interval(t, np.asarray(y, dtype=float), alpha, mixing_sd, min_per_arm)
    return SequentialResult(
        n_control=int((~t).sum()),
        n_treatment=int(t.sum()),
        difference=float(theta[-1]),
        p_value=float(p[-1]),
        ci_low=lo,
        ci_high=hi,
    )


def _latest_interval(
    t: np.ndarray, y: np.ndarray, alpha: float, mixing_sd: float, min_per_arm: int
) -> tuple[float, float]:
    n1, n0 = int(t.sum()), int((~t).sum())
    if min(n1, n0) < max(min_per_arm, 2):
        return -math.inf, math.inf
    v1, v0 = float(y[t].var(ddof=1)), float(y[~t].var(ddof=1))
    v = v1 / n1 + v0 / n0
    tau2 = mixing_sd**2 * ((n1 - 1) * v1 + (n0 - 1) * v0) / (n1 + n0 - 2)
    theta = float(y[t].mean() - y[~t].mean())
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))
    return theta - half, theta + half


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ((0, 1) when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and normal-approximation interval of ``values`` (nan when empty)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, -math.inf, math.inf
    z = NormalDist().inv_cdf(0.5 + level / 2)
    half = z * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def fixed_horizon_p_value(treated: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p-value of the ordinary (Welch, normal) z-test of the difference of means:
    valid only when computed once, at a sample size fixed in advance."""
    t = np.asarray(treated, dtype=bool)
    y = np.asarray(y, dtype=np.float64)
    n1, n0 = int(t.sum()), int((~t).sum())
    if min(n1, n0) < 2:
        return 1.0
    v = float(y[t].var(ddof=1)) / n1 + float(y[~t].var(ddof=1)) / n0
    if v <= 0:
        return 1.0
    z = float(y[t].mean() - y[~t].mean()) / math.sqrt(v)
    return 2 * (1 - NormalDist().cdf(abs(z)))
