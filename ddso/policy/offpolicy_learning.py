"""Policies to evaluate off-policy, as action distributions, and policies learned from a log.

Every function returns what the estimators of :mod:`ddso.policy.ope` take: ``pi[a, k]`` (one
distribution for all rows, for context-free policies) or ``pi[i, a, k]``, the probability of
action ``a`` at position ``k`` for logged row ``i``.

- :func:`uniform_action_dist`: the uniform random policy;
- :func:`thompson_action_dist`: Bernoulli Thompson sampling that ranks actions by one Beta
  draw each and fills positions in rank order (the Open Bandit Dataset's production BTS); its
  per-position probabilities have no closed form and come from seeded Monte-Carlo draws, as in
  the Open Bandit Pipeline;
- :func:`ranking_action_dist` and :func:`top_m_action_dist`: policies learned off-policy
  from a reward model's predictions (e.g. :class:`~ddso.policy.ope.LogisticRewardModel` fitted
  on one part of a log, then evaluated on another).
"""

from __future__ import annotations

import numpy as np

from ddso.errors import UserError

_DRAWS_PER_CHUNK = 10_000


def uniform_action_dist(n_actions: int, n_positions: int = 1) -> np.ndarray:
    """Every action with probability ``1 / n_actions`` at every position: (n_actions, n_pos)."""
    if n_actions < 1 or n_positions < 1:
        raise UserError(f"n_actions={n_actions}, n_positions={n_positions}: both must be >= 1")
    return np.full((n_actions, n_positions), 1.0 / n_actions)


def thompson_action_dist(alpha: np.ndarray, beta: np.ndarray, n_positions: int = 1,
                         n_sim: int = 100_000, seed: int = 0) -> np.ndarray:
    """P(action a is shown at position k) under Bernoulli Thompson sampling.

    Each simulated decision draws ``theta_a ~ Beta(alpha_a, beta_a)`` for every action and shows
    the ``n_positions`` largest in decreasing order. Returns the frequencies over ``n_sim``
    decisions, shape (n_actions, n_positions); the Monte-Carlo error of an entry ``p`` is about
    ``sqrt(p (1 - p) / n_sim)``.
    """
    alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    if alpha.ndim != 1 or alpha.shape != beta.shape:
        raise UserError(f"alpha and beta must be 1-d and equally long, one per action (got "
                        f"shapes {alpha.shape} and {beta.shape})")
    if not (np.all(alpha > 0) and np.all(beta > 0)):
        raise UserError("alpha and beta must be positive: they are Beta distribution parameters")
    if not 1 <= n_positions <= alpha.size:
        raise UserError(f"n_positions={n_positions}: must be in [1, n_actions = {alpha.size}]")
    if n_sim < 1:
        raise UserError(f"n_sim={n_sim}: need at least one simulated decision")
    rng = np.random.default_rng(seed)
    counts = np.zeros((alpha.size, n_positions))
    for start in range(0, n_sim, _DRAWS_PER_CHUNK):
        draws = rng.beta(alpha, beta, size=(min(_DRAWS_PER_CHUNK, n_sim - start), alpha.size))
        shown = np.argsort(-draws, axis=1)[:, :n_positions]
        for k in range(n_positions):
            counts[:, k] += np.bincount(shown[:, k], minlength=alpha.size)
    return counts / n_sim


def ranking_action_dist(scores: np.ndarray, n_positions: int = 1) -> np.ndarray:
    """The deterministic policy that shows row ``i``'s ``k``-th best action at position ``k``.

    ``scores`` has shape (n, n_actions) (e.g. predicted click probabilities); ties go to the
    lower action index. Returns (n, n_actions, n_positions) of zeros and ones.
    """
    scores = _check_scores(scores)
    n, n_actions = scores.shape
    if not 1 <= n_positions <= n_actions:
        raise UserError(f"n_positions={n_positions}: must be in [1, n_actions = {n_actions}]")
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :n_positions]
    dist = np.zeros((n, n_actions, n_positions))
    rows = np.arange(n)[:, None]
    dist[rows, ranked, np.arange(n_positions)[None, :]] = 1.0
    return dist


def top_m_action_dist(scores: np.ndarray, top_m: int, n_positions: int = 1) -> np.ndarray:
    """Uniform over row ``i``'s ``top_m`` best actions, the same distribution at every position.

    A stochastic relaxation of :func:`ranking_action_dist` that keeps importance weights at
    ``n_actions / top_m`` under uniform logging, so far more logged rows inform its estimate.
    Returns (n, n_actions, n_positions); ties go to the lower action index.
    """
    scores = _check_scores(scores)
    if not 1 <= top_m <= scores.shape[1]:
        raise UserError(f"top_m={top_m}: must be in [1, n_actions = {scores.shape[1]}]")
    if n_positions < 1:
        raise UserError(f"n_positions={n_positions}: must be >= 1")
    best = np.argsort(-scores, axis=1, kind="stable")[:, :top_m]
    dist = np.zeros(scores.shape)
    np.put_along_axis(dist, best, 1.0 / top_m, axis=1)
    return np.repeat(dist[:, :, None], n_positions, axis=2)


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or not np.all(np.isfinite(scores)):
        raise UserError(f"scores must be a finite (n, n_actions) array; got shape {scores.shape}")
    return scores
