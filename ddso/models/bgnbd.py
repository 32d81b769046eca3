"""The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005), fitted by maximum likelihood.

While active, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``
(shape ``r``, rate ``alpha``); after each purchase the customer drops out with probability
``p ~ Beta(a, b)``. A customer is summarised by ``frequency`` (repeat transactions, x),
``recency`` (time of the last purchase after the first, t_x) and ``T`` (time observed since
the first purchase), in the same time unit (weeks for CDNOW).

:class:`BetaGeoFitter` maximises the log-likelihood over the log of the four parameters with
L-BFGS-B and gives the conditional expectation of holdout transactions and P(alive).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from ddso.errors import NotFittedError, UserError

ArrayLike = np.ndarray | list[float] | float


class BGNBDParams(NamedTuple):
    """The four BG/NBD parameters: Gamma(r, alpha) for the rate, Beta(a, b) for dropout."""

    r: float
    alpha: float
    a: float
    b: float


def _arrays(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, big_t = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
    x, t_x, big_t = np.broadcast_arrays(x, t_x, big_t)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t_x)) and np.all(np.isfinite(big_t))):
        raise UserError("BG/NBD inputs must be finite; drop or fill missing customers first")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise UserError("frequency must be a non-negative integer count of repeat transactions")
    if np.any(t_x < 0) or np.any(t_x > big_t + 1e-9):
        raise UserError("recency must lie in [0, T] for every customer (same time unit as T)")
    if np.any((x == 0) & (t_x > 0)):
        raise UserError("a customer with frequency 0 must have recency 0")
    return x, t_x, big_t


def log_likelihood(params: BGNBDParams | tuple[float, float, float, float],
                   frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (FHL 2005, eq. 6), computed in log space."""
    r, alpha, a, b = params
    x, t_x, big_t = _arrays(frequency, recency, T)
    return _ll(r, alpha, a, b, x, t_x, big_t)


def _ll(r: float, alpha: float, a: float, b: float,
        x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + big_t)
    repeat = x > 0
    a4 = np.full_like(x, -np.inf)
    a4[repeat] = (np.log(a) - np.log(b + x[repeat] - 1)
                  - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return a1 + a2 + np.logaddexp(a3, a4)


class BetaGeoFitter:
    """BG/NBD fitted by maximum likelihood; ``params_`` holds ``(r, alpha, a, b)`` after fit.

    ``penalizer`` adds ``penalizer * sum(params**2)`` to the negative mean log-likelihood (0 by
    default: plain maximum likelihood).
    """

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = float(penalizer)
        self.params_: BGNBDParams | None = None
        self.log_likelihood_: float | None = None

    def fit(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike,
            initial: tuple[float, float, float, float] = (0.5, 5.0, 0.8, 2.5)
            ) -> BetaGeoFitter:
        """Maximise the total log-likelihood of the customers; returns ``self``."""
        x, t_x, big_t = _arrays(frequency, recency, T)
        if x.size == 0:
            raise UserError("BetaGeoFitter.fit needs at least one customer")
        # Customers with the same (x, t_x, T) share a likelihood term: fit on unique rows.
        rows, counts = np.unique(np.stack([x.ravel(), t_x.ravel(), big_t.ravel()]), axis=1,
                                 return_counts=True)
        ux, ut, uT = rows
        n = counts.sum()
        # Rescale time so alpha's optimum is near 1 (better conditioned); undone below.
        scale = float(np.mean(big_t)) or 1.0

        def objective(log_params: np.ndarray) -> float:
            r, alpha, a, b = np.exp(log_params)
            # In rescaled time the log-likelihood only shifts by -x log(scale): same optimum.
            ll = np.dot(counts, _ll(r, alpha, a, b, ux, ut / scale, uT / scale))
            value = -ll / n + self.penalizer * float(np.sum(np.exp(log_params) ** 2))
            return value if np.isfinite(value) else 1e10

        start = np.log(np.array(initial, dtype="float64") / np.array([1, scale, 1, 1]))
        best = None
        for method in ("L-BFGS-B", "Nelder-Mead"):
            options = {"maxiter": 5000, "xatol": 1e-10, "fatol": 1e-12} \
                if method == "Nelder-Mead" else {"maxiter": 2000}
            result = minimize(objective, best.x if best is not None else start,
                              method=method, options=options)
            if best is None or result.fun <= best.fun:
                best = result
        r, alpha, a, b = np.exp(best.x)
        self.params_ = BGNBDParams(float(r), float(alpha * scale), float(a), float(b))
        self.log_likelihood_ = float(log_likelihood(self.params_, x, t_x, big_t).sum())
        return self

    def _params(self) -> BGNBDParams:
        if self.params_ is None:
            raise NotFittedError("BetaGeoFitter is not fitted; call fit(frequency, recency, T)")
        return self.params_

    def _dead_odds(self, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
        """a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) for x > 0, else 0."""
        r, alpha, a, b = self._params()
        odds = np.zeros_like(x)
        rep = x > 0
        odds[rep] = np.exp(np.log(a) - np.log(b + x[rep] - 1)
                           + (r + x[rep]) * (np.log(alpha + big_t[rep])
                                             - np.log(alpha + t_x[rep])))
        return odds

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> np.ndarray:
        """P(customer still active at T | x, t_x, T) (FHL 2005, eq. 13 of the derivation note)."""
        x, t_x, big_t = _arrays(frequency, recency, T)
        return 1.0 / (1.0 + self._dead_odds(x, t_x, big_t))

    def expected_transactions(self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike,
                              T: ArrayLike) -> np.ndarray:
        """E[transactions in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10)."""
        r, alpha, a, b = self._params()
        x, t_x, big_t = _arrays(frequency, recency, T)
        t = np.broadcast_to(np.asarray(t, dtype="float64"), x.shape)
        if np.any(t < 0):
            raise UserError("holdout length t must be non-negative")
        z = t / (alpha + big_t + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        ratio = np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t)))
        numerator = (a + b + x - 1) / (a - 1) * (1.0 - ratio * hyp)
        return numerator / (1.0 + self._dead_odds(x, t_x, big_t))

    def expected_unconditional(self, t: ArrayLike) -> np.ndarray:
        """E[X(t)]: expected repeat transactions in (0, t] for a new customer (FHL eq. 9)."""
        r, alpha, a, b = self._params()
        t = np.asarray(t, dtype="float64")
        z = t / (alpha + t)
        return (a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + t)) ** r
                                        * hyp2f1(r, b, a + b - 1, z))


def simulate(params: BGNBDParams | tuple[float, float, float, float], T: ArrayLike,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(frequency, recency)`` for customers observed for ``T`` after their first purchase.

    Used to check that :class:`BetaGeoFitter` recovers known parameters.
    """
    r, alpha, a, b = params
    big_t = np.atleast_1d(np.asarray(T, dtype="float64"))
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, size=big_t.size)
    p = rng.beta(a, b, size=big_t.size)
    frequency = np.zeros(big_t.size)
    recency = np.zeros(big_t.size)
    for i in range(big_t.size):
        now = 0.0
        while True:
            now += rng.exponential(1.0 / lam[i]) if lam[i] > 0 else np.inf
            if now > big_t[i]:
                break
            frequency[i] += 1
            recency[i] = now
            if rng.random() < p[i]:  # drops out right after this purchase
                break
    return frequency, recency
