"""Off-policy evaluation: what a new policy would have earned, estimated from logged decisions.

The input is :class:`LoggedBandit`, one row per logged decision in the shape the serving
audit record keeps: the features as entered (``context``), the action taken, its position on
the page if the decision filled a slot of a list, the reward joined back later, and the
logging policy's probability of that action (``propensity``). The policy to evaluate is given
as its action distribution ``action_dist[i, a]`` = pi_e(a | x_i), or ``action_dist[i, a, k]``
= pi_e(a | x_i, position k) when the log has positions (each position is evaluated as its own
decision, as in the Open Bandit Pipeline).

Four estimators, each a pure function returning an :class:`Estimate` (value, standard error,
normal confidence interval):

- :func:`ips`: inverse propensity scoring, mean of ``w * r`` with ``w = pi_e / propensity``;
  unbiased when every action pi_e can take had a positive logging probability;
- :func:`snips`: self-normalised IPS, ``sum(w * r) / sum(w)``; slightly biased, lower variance;
- :func:`dm`: direct method, the reward model's prediction averaged under pi_e; low variance,
  biased by whatever the model gets wrong;
- :func:`dr`: doubly robust, DM plus the IPS-weighted residual of the model; unbiased if either
  the propensities or the model are right.

The reward model for DM and DR is :class:`LogisticRewardModel` (binary rewards: clicks,
conversions), fitted by :func:`cross_fit_rewards` so that no row's prediction comes from a model
that saw that row. :func:`bootstrap` resamples rows with a fixed seed for the spread of any
statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from statistics import NormalDist

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ddso.errors import NotFittedError, UserError

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")
"""Names of the estimators, in the order :func:`estimate_all` returns them."""

_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LoggedBandit:
    """Logged bandit feedback: row ``i`` is one decision the logging policy made.

    Arrays are converted and checked on construction; a bad one raises :class:`UserError`
    naming the field.
    """

    context: np.ndarray
    """Features of each decision as the policy saw them, shape (n, d), finite floats."""
    action: np.ndarray
    """Index of the action taken, shape (n,), integers in [0, n_actions)."""
    reward: np.ndarray
    """Observed reward of the action taken, shape (n,), finite."""
    propensity: np.ndarray
    """Logging policy's probability of the action taken (at its position), in (0, 1]."""
    n_actions: int
    """Number of actions the policies choose among."""
    position: np.ndarray | None = None
    """Slot of the action in a list, shape (n,), integers in [0, n_positions); None if none."""
    n_positions: int = 1
    """Number of slots; must be 1 when ``position`` is None."""
    action_features: np.ndarray | None = None
    """Optional features of each (decision, action) pair, e.g. a user-item affinity, shape
    (n, n_actions, m); the reward model uses them, the estimators do not."""

    def __post_init__(self) -> None:
        for name in ("n_actions", "n_positions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise UserError(f"LoggedBandit.{name}={value!r}: must be an integer >= 1")
        n = _convert(self, "action", "(n,)", integer=True).shape[0]
        _check_index(self, "action", "n_actions")
        _convert(self, "context", f"(n, d) with n = {n}", ndim=2, n=n)
        _convert(self, "reward", f"({n},)", n=n)
        propensity = _convert(self, "propensity", f"({n},)", n=n)
        bad = ~((propensity > 0) & (propensity <= 1))
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(f"LoggedBandit.propensity[{i}] = {propensity[i]:g} is not in (0, 1]; "
                            "log the logging policy's probability of the action it took")
        if self.position is not None:
            _convert(self, "position", f"({n},)", n=n, integer=True)
            _check_index(self, "position", "n_positions")
        elif self.n_positions != 1:
            raise UserError(f"LoggedBandit.n_positions={self.n_positions} but position is None; "
                            "pass the position of every row, or n_positions=1")
        if self.action_features is not None:
            if np.ndim(self.action_features) == 2:
                object.__setattr__(self, "action_features",
                                   np.asarray(self.action_features)[:, :, None])
            features = _convert(self, "action_features",
                                f"(n, n_actions, m) = ({n}, {self.n_actions}, m)", ndim=3, n=n)
            if features.shape[1] != self.n_actions:
                raise UserError(f"LoggedBandit.action_features has shape {features.shape}; "
                                f"expected (n, n_actions, m) = ({n}, {self.n_actions}, m)")

    @property
    def n(self) -> int:
        return int(self.action.shape[0])

    @property
    def slot(self) -> np.ndarray:
        """Position of every row, zeros when the log has no positions."""
        return self.position if self.position is not None else np.zeros(self.n, dtype=np.int64)

    def take(self, rows: np.ndarray) -> LoggedBandit:
        """The log restricted to (or resampled at) ``rows``, an index array."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value[rows] if isinstance(value, np.ndarray) else value
        return LoggedBandit(**values)


def _convert(data: LoggedBandit, name: str, expected: str, *, ndim: int = 1,
             n: int | None = None, integer: bool = False) -> np.ndarray:
    """Field ``name`` as a finite float (or int64) array of ``ndim`` dimensions and ``n`` rows."""
    raw = np.asarray(getattr(data, name))
    if raw.dtype.kind not in "biuf":
        raise UserError(f"LoggedBandit.{name} must be numeric (got dtype {raw.dtype})")
    if raw.ndim != ndim or (n is not None and raw.shape[0] != n):
        raise UserError(f"LoggedBandit.{name} has shape {raw.shape}; expected {expected}, one "
                        "row per logged action")
    value = raw.astype(float)
    finite = np.isfinite(value).reshape(value.shape[0], -1).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        shown = f" = {value[i]:g}" if ndim == 1 else ""
        raise UserError(f"LoggedBandit.{name}[{i}]{shown} is not finite; impute or drop that row")
    if integer:
        if np.any(value != np.round(value)):
            raise UserError(f"LoggedBandit.{name} must hold integer indices (got {raw.dtype})")
        value = raw.astype(np.int64)
    object.__setattr__(data, name, value)
    return value


def _check_index(data: LoggedBandit, name: str, upper_name: str) -> None:
    value, upper = getattr(data, name), getattr(data, upper_name)
    bad = (value < 0) | (value >= upper)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"LoggedBandit.{name}[{i}] = {value[i]} is outside [0, {upper_name} = "
                        f"{upper}); indices start at 0")


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate with its standard error over ``n`` logged rows."""

    value: float
    se: float
    n: int

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Normal-approximation confidence interval ``value +- z * se``."""
        if not 0 < level < 1:
            raise UserError(f"level={level!r}: a confidence level must be in (0, 1)")
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return self.value - z * self.se, self.value + z * self.se


def _mean_estimate(terms: np.ndarray, value: float | None = None) -> Estimate:
    """Estimate from per-row terms whose mean is the estimate (or whose spread gives its SE)."""
    n = terms.shape[0]
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Estimate(float(terms.mean()) if value is None else value, se, n)


def _per_row(data: LoggedBandit, array: np.ndarray, name: str, *,
             distribution: bool) -> np.ndarray:
    """``array`` as (n, n_actions, n_positions), checked against ``data``."""
    given = np.asarray(array, dtype=float)
    array = given[:, :, None] if data.position is None and given.ndim == 2 else given
    expected = (data.n, data.n_actions, data.n_positions)
    if array.shape != expected:
        wanted = expected[:2] if data.position is None else expected
        raise UserError(f"{name} has shape {given.shape}; expected {wanted} (rows, actions"
                        f"{'' if data.position is None else ', positions'}) for this log")
    if not np.all(np.isfinite(array)):
        raise UserError(f"{name} has NaN or infinite values")
    if distribution:
        if np.any(array < 0):
            raise UserError(f"{name} has negative probabilities; it must be pi_e(a | x)")
        sums = array.sum(axis=1)
        off = np.abs(sums - 1) > _SUM_TOLERANCE
        if off.any():
            i, k = np.argwhere(off)[0]
            raise UserError(f"{name}[{i}, :, {k}] sums to {sums[i, k]:.6g}, not 1; every row "
                            "(and position) must be a probability distribution over actions")
    return array


def importance_weights(data: LoggedBandit, action_dist: np.ndarray) -> np.ndarray:
    """``pi_e(a_i | x_i, k_i) / propensity_i`` for every logged row."""
    pi = _per_row(data, action_dist, "action_dist", distribution=True)
    return pi[np.arange(data.n), data.action, data.slot] / data.propensity


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``sum(w)^2 / sum(w^2)`` of importance weights."""
    squares = float(np.sum(np.square(weights)))
    return float(np.sum(weights)) ** 2 / squares if squares > 0 else 0.0


def ips(data: LoggedBandit, action_dist: np.ndarray) -> Estimate:
    """Inverse propensity scoring: the mean of ``w_i * r_i``."""
    return _mean_estimate(importance_weights(data, action_dist) * data.reward)


def snips(data: LoggedBandit, action_dist: np.ndarray) -> Estimate:
    """Self-normalised IPS ``sum(w r) / sum(w)``; its SE is the delta-method one."""
    return snips_weighted(importance_weights(data, action_dist), data.reward)


def snips_weighted(weights: np.ndarray, reward: np.ndarray) -> Estimate:
    """:func:`snips` from the importance weights and rewards of the logged rows."""
    weights, reward = np.asarray(weights, dtype=float), np.asarray(reward, dtype=float)
    mean_weight = weights.mean() if len(weights) else 0.0
    if mean_weight == 0:
        raise UserError("action_dist gives probability 0 to every logged action, so SNIPS is "
                        "undefined; the log has no support for this policy")
    value = float(np.sum(weights * reward) / np.sum(weights))
    return _mean_estimate(weights * (reward - value) / mean_weight, value=value)


def _model_terms(data: LoggedBandit, action_dist: np.ndarray,
                 reward_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the model's value under pi_e, the importance weight, the model's residual."""
    pi = _per_row(data, action_dist, "action_dist", distribution=True)
    q = _per_row(data, reward_hat, "reward_hat", distribution=False)
    rows, slot = np.arange(data.n), data.slot
    expected = np.einsum("ia,ia->i", pi[rows, :, slot], q[rows, :, slot])
    weights = pi[rows, data.action, slot] / data.propensity
    return expected, weights, data.reward - q[rows, data.action, slot]


def dm(data: LoggedBandit, action_dist: np.ndarray, reward_hat: np.ndarray) -> Estimate:
    """Direct method: ``mean_i sum_a pi_e(a | x_i) q(x_i, a)``.

    Its SE covers the sampling of contexts only, not the reward model's own error, so its
    interval is too narrow whenever the model is biased.
    """
    expected, _, _ = _model_terms(data, action_dist, reward_hat)
    return _mean_estimate(expected)


def dr(data: LoggedBandit, action_dist: np.ndarray, reward_hat: np.ndarray) -> Estimate:
    """Doubly robust: DM plus ``w_i * (r_i - q(x_i, a_i))``."""
    expected, weights, residual = _model_terms(data, action_dist, reward_hat)
    return _mean_estimate(expected + weights * residual)


def estimate_all(data: LoggedBandit, action_dist: np.ndarray,
                 reward_hat: np.ndarray) -> dict[str, Estimate]:
    """Every estimator of :data:`ESTIMATORS` on one log and one policy."""
    return {"ips": ips(data, action_dist), "snips": snips(data, action_dist),
            "dm": dm(data, action_dist, reward_hat), "dr": dr(data, action_dist, reward_hat)}


class LogisticRewardModel:
    """P(reward = 1 | x, a, k) by L2 logistic regression on context, action and position.

    The logit is ``context @ coef_context_ + coef_action_[a] + coef_position_[k] +
    action_features[a] @ coef_action_features_ + intercept_``: additive, so predicting every
    action of every row costs one broadcast instead of n * n_actions model calls. ``C`` is the
    inverse L2 strength (scikit-learn's); with few positive rewards, small ``C`` guards against
    fitting noise.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, data: LoggedBandit) -> LogisticRewardModel:
        labels = np.unique(data.reward)
        if not np.isin(labels, (0.0, 1.0)).all() or labels.size != 2:
            raise UserError(f"LogisticRewardModel needs rewards of both 0 and 1; this log has "
                            f"{labels[:5].tolist()}. Use a log with at least one success and "
                            "one failure (binary rewards only)")
        rows = np.arange(data.n)
        blocks = [sp.csr_matrix(data.context),
                  sp.csr_matrix((np.ones(data.n), (rows, data.action)),
                                shape=(data.n, data.n_actions)),
                  sp.csr_matrix((np.ones(data.n), (rows, data.slot)),
                                shape=(data.n, data.n_positions))]
        if data.action_features is not None:
            blocks.append(sp.csr_matrix(data.action_features[rows, data.action]))
        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        model.fit(sp.hstack(blocks, format="csr"), data.reward.astype(np.int64))
        coef = model.coef_[0]
        ends = np.cumsum([data.context.shape[1], data.n_actions, data.n_positions])
        self.coef_context_ = coef[:ends[0]]
        self.coef_action_ = coef[ends[0]:ends[1]]
        self.coef_position_ = coef[ends[1]:ends[2]]
        self.coef_action_features_ = coef[ends[2]:]
        self.intercept_ = float(model.intercept_[0])
        return self

    def predict(self, data: LoggedBandit) -> np.ndarray:
        """P(reward = 1) for every row, action and position: shape (n, n_actions, n_positions)."""
        if not hasattr(self, "intercept_"):
            raise NotFittedError("LogisticRewardModel is not fitted yet; call fit(data) first")
        expected = (self.coef_context_.shape[0], self.coef_action_.shape[0],
                    self.coef_position_.shape[0], self.coef_action_features_.shape[0])
        features = data.action_features
        got = (data.context.shape[1], data.n_actions, data.n_positions,
               0 if features is None else features.shape[2])
        if got != expected:
            raise UserError(f"LogisticRewardModel was fitted on (context width, n_actions, "
                            f"n_positions, action features) = {expected}, but this log has {got}")
        logit = (data.context @ self.coef_context_ + self.intercept_)[:, None, None]
        logit = logit + self.coef_action_[None, :, None] + self.coef_position_[None, None, :]
        if features is not None:
            logit = logit + (features @ self.coef_action_features_)[:, :, None]
        return expit(logit)


def cross_fit_rewards(data: LoggedBandit, n_folds: int = 3, seed: int = 0,
                      C: float = 1.0) -> np.ndarray:
    """Out-of-fold reward predictions for every row, action and position.

    Rows are split into ``n_folds`` folds stratified by reward; each fold is predicted by a
    :class:`LogisticRewardModel` fitted on the others, so DR's correction term is not shrunk by
    a model that memorised the very rewards it corrects. Shape (n, n_actions[, n_positions]),
    as :func:`dm` and :func:`dr` take it.
    """
    if n_folds < 2:
        raise UserError(f"n_folds={n_folds}: cross-fitting needs at least 2 folds")
    out = np.empty((data.n, data.n_actions, data.n_positions))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, held_out in folds.split(data.context, data.reward):
        model = LogisticRewardModel(C=C).fit(data.take(train))
        out[held_out] = model.predict(data.take(held_out))
    return out[:, :, 0] if data.position is None else out


def bootstrap(statistic: Callable[[np.ndarray], Mapping[str, float]], n: int,
              n_boot: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """Evaluate ``statistic(rows)`` on ``n_boot`` resamples of ``n`` rows drawn with replacement.

    ``statistic`` gets the resampled row indices (to index the log and any per-row arrays) and
    returns named floats; the result maps each name to its ``n_boot`` values. Resample ``b`` is
    the same for the same ``seed``, whatever the statistic.
    """
    if n < 1 or n_boot < 1:
        raise UserError(f"bootstrap needs n >= 1 rows and n_boot >= 1 resamples (got n={n}, "
                        f"n_boot={n_boot})")
    rng = np.random.default_rng(seed)
    results: dict[str, list[float]] = {}
    for _ in range(n_boot):
        for name, value in statistic(rng.integers(0, n, size=n)).items():
            results.setdefault(name, []).append(float(value))
    return {name: np.asarray(values) for name, values in results.items()}
