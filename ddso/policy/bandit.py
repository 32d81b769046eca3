"""A linear contextual bandit over the decision's actions, learned from logged decisions.

One ridge regression of the reward on the decision's context per action (``none`` for no
contact, else ``channel:offer``), kept as sufficient statistics (``A = ridge I + sum w x x'``,
``b = sum w r x``), so it learns one labelled decision at a time (:meth:`LinearBandit.learn`)
and a label that changes later (a late outcome) is corrected by its difference
(:meth:`LinearBandit.relabel`). The context (:func:`context`) is the served feature vector
the audit record holds plus the customer's age from its facts (which offer suits a customer
depends on it), standardised with the first batch's means and scales (kept with the model,
so a version scores the same forever) plus a constant.

The bandit scores each candidate by its predicted reward (plus ``alpha`` times the
upper-confidence width when ``alpha > 0``); exploration stays with
:func:`ddso.policy.decide.decide`'s epsilon-greedy draw, which keeps every logged propensity
exact for off-policy evaluation. Actions never taken in the log are left unscored.

:class:`BanditPolicy` is one registry version of it (``engagement_policy`` with
``kind: linear_bandit``), ranking a decision's candidates like the RL policy does.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ddso.errors import NotFittedError, UserError
from ddso.models.registry import ModelRegistry, ModelVersion
from ddso.policy.arbitration import CustomerFacts
from ddso.policy.decide import Candidate, PolicyScores

KIND = "linear_bandit"
ARTIFACT = "bandit.json"


def context(features: Mapping[str, float],
            facts: CustomerFacts | Mapping[str, Any] | None) -> dict[str, float]:
    """The bandit's context of one decision: the served features and the customer's age
    (``facts`` as served, or as the audit record's JSON holds them; missing: no age)."""
    age = facts.age if isinstance(facts, CustomerFacts) else (facts or {}).get("age")
    return {**features, "age": float("nan") if age is None else float(age)}


def action_key(channel: str | None, offer_id: str | None) -> str:
    """The action's name in logs and models: ``none``, or ``channel:offer`` (offer may be
    empty for a contact without an offer)."""
    # a missing value read back from Parquet through pandas is NaN, not None
    if channel is None or channel != channel:
        return "none"
    return f"{channel}:{offer_id if offer_id is not None and offer_id == offer_id else ''}"


class LinearBandit:
    """Per-action ridge regressions of reward on context (see the module docstring)."""

    def __init__(self, features: Sequence[str], *, ridge: float = 1.0, alpha: float = 0.0):
        if not features:
            raise UserError("LinearBandit needs at least one context feature")
        if not ridge > 0 or alpha < 0:
            raise UserError(f"LinearBandit: ridge must be > 0 and alpha >= 0, got {ridge}, "
                            f"{alpha}")
        self.features = list(features)
        self.ridge = float(ridge)
        self.alpha = float(alpha)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.A_: dict[str, np.ndarray] = {}
        self.b_: dict[str, np.ndarray] = {}
        self.n_: dict[str, float] = {}
        self._theta: dict[str, np.ndarray] = {}
        self._inverse: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return len(self.features) + 1

    def contexts(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Raw feature rows (dicts) as a float matrix in :attr:`features` order (NaN missing)."""
        return np.array([[float(r.get(f, np.nan)) for f in self.features] for r in rows],
                        dtype=float).reshape(len(rows), len(self.features))

    def _design(self, raw: np.ndarray) -> np.ndarray:
        if self.mean_ is None:
            raise NotFittedError("LinearBandit is not fitted yet: call learn() with labelled "
                                 "decisions first")
        z = np.nan_to_num((raw - self.mean_) / self.scale_, nan=0.0, posinf=0.0, neginf=0.0)
        return np.hstack([np.clip(z, -10, 10), np.ones((len(raw), 1))])

    def learn(self, raw: np.ndarray, actions: Sequence[str], rewards: np.ndarray,
              weights: np.ndarray | None = None) -> LinearBandit:
        """Add labelled decisions (context rows, action keys, rewards); returns self."""
        raw = np.asarray(raw, dtype=float).reshape(len(actions), len(self.features))
        rewards = np.asarray(rewards, dtype=float)
        w = np.ones(len(actions)) if weights is None else np.asarray(weights, dtype=float)
        if not (len(rewards) == len(w) == len(raw)):
            raise UserError("LinearBandit.learn: contexts, actions, rewards and weights must "
                            f"have one row per decision ({len(raw)}, {len(actions)}, "
                            f"{len(rewards)}, {len(w)})")
        if not len(raw):
            return self
        if self.mean_ is None:
            with warnings.catch_warnings():  # a feature missing from every row: mean 0, scale 1
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, scale = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
            self.mean_ = np.nan_to_num(mean)
            scale = np.nan_to_num(scale)
            self.scale_ = np.where(scale > 0, scale, 1.0)
        x = self._design(raw)
        keys = np.asarray(actions, dtype=object)
        for key in dict.fromkeys(keys):
            rows = keys == key
            xa, ra, wa = x[rows], rewards[rows], w[rows]
            if key not in self.A_:
                self.A_[key] = self.ridge * np.eye(self.dim)
                self.b_[key] = np.zeros(self.dim)
                self.n_[key] = 0.0
            self.A_[key] += (xa * wa[:, None]).T @ xa
            self.b_[key] += xa.T @ (wa * ra)
            self.n_[key] += float(wa.sum())
            self._theta.pop(key, None)
        return self

    def relabel(self, raw: np.ndarray, actions: Sequence[str], delta: np.ndarray,
                weights: np.ndarray | None = None) -> None:
        """Correct decisions already learned (with these ``weights``) whose reward changed
        by ``delta`` (a late outcome): their contexts stay, only the reward sums move."""
        x = self._design(np.asarray(raw, dtype=float).reshape(len(actions), len(self.features)))
        w = np.ones(len(actions)) if weights is None else np.asarray(weights, dtype=float)
        for i, key in enumerate(actions):
            if key not in self.b_:
                raise UserError(f"relabel: action {key!r} was never learned")
            self.b_[key] += float(w[i] * delta[i]) * x[i]
            self._theta.pop(key, None)

    def _solve(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self._theta:
            inverse = np.linalg.inv(self.A_[key])
            self._inverse[key] = inverse
            self._theta[key] = inverse @ self.b_[key]
        return self._theta[key], self._inverse[key]

    def predict(self, raw: np.ndarray, keys: Sequence[str]) -> np.ndarray:
        """Scores, shape (rows, len(keys)); NaN for an action never learned."""
        x = self._design(np.asarray(raw, dtype=float).reshape(-1, len(self.features)))
        out = np.full((len(x), len(keys)), np.nan)
        for j, key in enumerate(keys):
            if key in self.A_:
                theta, inverse = self._solve(key)
                out[:, j] = x @ theta
                if self.alpha > 0:
                    out[:, j] += self.alpha * np.sqrt(np.einsum("ij,jk,ik->i", x, inverse, x))
        return out

    # --- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        if self.mean_ is None:
            raise NotFittedError("LinearBandit is not fitted yet: nothing to save")
        return {"kind": KIND, "features": self.features, "ridge": self.ridge,
                "alpha": self.alpha, "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                "actions": {k: {"A": self.A_[k].tolist(), "b": self.b_[k].tolist(),
                                "n": self.n_[k]} for k in sorted(self.A_)}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LinearBandit:
        if d.get("kind") != KIND:
            raise UserError(f"not a {KIND} model: kind {d.get('kind')!r}")
        bandit = cls(d["features"], ridge=d["ridge"], alpha=d["alpha"])
        bandit.mean_ = np.asarray(d["mean"], dtype=float)
        bandit.scale_ = np.asarray(d["scale"], dtype=float)
        for key, s in d["actions"].items():
            bandit.A_[key] = np.asarray(s["A"], dtype=float)
            bandit.b_[key] = np.asarray(s["b"], dtype=float)
            bandit.n_[key] = float(s["n"])
        return bandit

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearBandit:
        return cls.from_dict(json.loads(Path(path).read_text()))


def register_candidate(registry: ModelRegistry, name: str, bandit: LinearBandit,
                       metadata: Mapping[str, Any]) -> ModelVersion:
    """Register ``bandit`` as a candidate version of ``name`` (never promoted here: the
    retrain's and the online updates' gates decide)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = bandit.save(Path(tmp) / ARTIFACT)
        return registry.register(name, {ARTIFACT: path}, {
            "kind": KIND, "features": bandit.features, **metadata}, promote=False)


class BanditPolicy:
    """One registry version of the bandit, ranking a decision's candidate actions."""

    def __init__(self, version: ModelVersion):
        self.bandit = LinearBandit.load(version.artifact(ARTIFACT))
        self.version = f"{version.name}:{version.version}"
        self.artifact_sha256 = version.artifact_sha256

    def scores(self, features: Mapping[str, float], candidates: Sequence[Candidate]
               ) -> dict[Candidate, float]:
        keys = [action_key(*c) for c in candidates]
        row = self.bandit.predict(self.bandit.contexts([features]), keys)[0]
        return {c: float(s) for c, s in zip(candidates, row, strict=True) if np.isfinite(s)}

    def ranker(self, features: Mapping[str, float], facts: CustomerFacts, band: str,
               decided_at: float) -> PolicyScores:
        """The candidates' scores for one decision, as ``decide`` takes them (the bandit's
        context is :func:`context`; band and time are the RL policy's inputs)."""
        row = context(features, facts)
        return lambda candidates: self.scores(row, candidates)


class OnlineBandit:
    """The champion bandit, updated one labelled decision at a time between retrains.

    Each labelled decision is first used to judge the model as it stands (prequential: the
    model has not learned from it yet), then learned; a label that changes later (a late
    outcome) corrects the reward sums by its difference. The judgement, over the decisions
    the serving champion made, is the same off-policy estimate the retraining gate uses:
    the logged reward weighted by the model's epsilon-greedy probability of the logged action
    over its exact logged propensity (self-normalised), against the champion's own mean
    reward on those decisions.
    """

    def __init__(self, bandit: LinearBandit, champion: str):
        self.bandit = bandit
        self.champion = champion
        self._learned: dict[str, tuple[str, np.ndarray, float]] = {}  # id -> key, x, reward
        self._weights: list[float] = []  # per judged decision: the model's importance weight
        self._rewards: list[float] = []  # and the champion's reward
        self.updates = 0

    def take(self, decision_id: str, row: Mapping[str, float], decision: Mapping[str, Any],
             reward: float) -> None:
        """One labelled decision (its :func:`context` and audit ``decision`` dict), learned
        unweighted as the retrain fits; a repeat with the same reward changes nothing."""
        raw = self.bandit.contexts([row])
        key = action_key(decision["channel"], decision["offer_id"])
        seen = self._learned.get(decision_id)
        if seen is not None:
            if seen[2] != reward:
                self.bandit.relabel(seen[1], [key], np.array([reward - seen[2]]))
                self._learned[decision_id] = (key, seen[1], reward)
                self.updates += 1
            return
        if decision["versions"].get("policy") == self.champion:
            self._judge(raw, decision, key, reward)
        self.bandit.learn(raw, [key], np.array([reward]))
        self._learned[decision_id] = (key, raw, reward)
        self.updates += 1

    def _judge(self, raw: np.ndarray, decision: Mapping[str, Any], key: str,
               reward: float) -> None:
        candidates = [action_key(*c) for c in decision["candidates"]]
        scores = self.bandit.predict(raw, candidates)[0]
        known = [(s, i) for i, s in enumerate(scores) if np.isfinite(s)]
        greedy = candidates[max(known)[1]] if known else action_key(*decision["greedy"])
        eps = float(decision["epsilon"]) if len(candidates) > 1 else 0.0
        prob = eps / len(candidates) + (1.0 - eps) * (key == greedy)
        self._weights.append(prob / float(decision["propensity"]))
        self._rewards.append(reward)

    @property
    def judged(self) -> int:
        return len(self._rewards)

    def judged_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(the model's importance weight, the champion's reward) of each decision judged
        since the last reset: what :meth:`ddso.policy.challenger.Comparison.from_weights`
        turns into the gate's comparison."""
        return np.array(self._weights, dtype=float), np.array(self._rewards, dtype=float)

    def judgement(self) -> tuple[float, float, int]:
        """(model's estimate, champion's mean reward, decisions judged) since the last reset."""
        weights, rewards = self.judged_rows()
        if not len(rewards) or weights.sum() == 0:
            return float("nan"), float("nan"), len(rewards)
        return float(weights @ rewards / weights.sum()), float(rewards.mean()), len(rewards)

    def reset_judgement(self) -> None:
        self._weights, self._rewards = [], []
