"""Probability calibration: map a model's raw probability to an observed frequency.

Boosted trees trained with early stopping rank well but their probabilities drift (and a
model trained on re-weighted or older data is biased by construction). A calibrator is fit on
rows the booster did not train on and applied after it, everywhere the probability is used.

- ``platt``: logistic regression on the raw log-odds, ``p' = sigmoid(a * logit(p) + b)``;
  two parameters, so it is safe on a few hundred rows or a few dozen positives, and it keeps
  the ranking (AUC is unchanged).
- ``isotonic``: a monotone step function (pool-adjacent-violators), linear between its
  breakpoints; more flexible, needs more rows, and may tie scores that were apart.

:func:`fit_calibrator` picks isotonic only with at least ``ISOTONIC_MIN_CLASS`` rows of each
class, Platt otherwise. Calibrators are plain data (a dict, stored beside the model as JSON)
and apply with numpy alone, so the serving path pays microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from ddso.errors import UserError

ISOTONIC_MIN_CLASS = 500
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    method: str
    """``platt``, ``isotonic`` or ``identity``."""
    params: dict[str, list[float] | float] = field(default_factory=dict)

    def apply(self, p) -> np.ndarray:
        """Calibrated probabilities for raw probabilities ``p`` (any shape)."""
        p = np.asarray(p, dtype=float)
        if self.method == "identity":
            return p
        if self.method == "platt":
            z = self.params["a"] * _logit(p) + self.params["b"]
            return 1.0 / (1.0 + np.exp(-z))
        if self.method == "isotonic":
            return np.interp(p, self.params["x"], self.params["y"])
        raise UserError(f"unknown calibration method {self.method!r}")

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        method = data.get("method")
        if method not in ("platt", "isotonic", "identity"):
            raise UserError(f"calibration: unknown method {method!r}")
        return cls(method, dict(data.get("params", {})))


def fit_calibrator(y, p, method: str = "auto") -> Calibrator:
    """Fit a calibrator of raw probabilities ``p`` to 0/1 outcomes ``y`` (see module doc).

    With a single class in ``y`` nothing can be learned: the identity is returned.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise UserError(f"calibration: y has shape {y.shape} and p {p.shape}; need equal 1-d")
    positives = int(y.sum())
    smaller = min(positives, len(y) - positives)
    if smaller == 0:
        return Calibrator("identity")
    if method == "auto":
        method = "isotonic" if smaller >= ISOTONIC_MIN_CLASS else "platt"
    if method == "platt":
        lr = LogisticRegression(C=1e4, max_iter=1000).fit(_logit(p)[:, None], y)
        return Calibrator("platt", {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return Calibrator(
            "isotonic",
            {"x": iso.X_thresholds_.astype(float).tolist(),
             "y": iso.y_thresholds_.astype(float).tolist()},
        )
    raise UserError(f"calibration: method must be auto, platt or isotonic, not {method!r}")
