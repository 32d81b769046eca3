"""The metrics report of a binary classifier: ranking, probability quality and calibration.

Every model the platform trains reports the same keys on its held-out (latest-in-time) rows,
so that the registry's promotion gate and the benchmarks compare like with like:

- ``auc``: ROC-AUC, how well the score ranks positives above negatives;
- ``pr_auc``: average precision, the ranking quality that matters when positives are rare;
- ``log_loss`` and ``brier``: how good the probabilities are (lower is better);
- ``ece``: expected calibration error over ``bins`` equal-count bins of the prediction, the
  row-weighted mean of ``|mean predicted - observed rate|``. Equal-count bins, because with
  rare positives nearly every prediction falls in the first of ten equal-width bins;
- ``rows``, ``positives``, ``positive_rate``, ``mean_prediction``.

A metric that is undefined on the rows (AUC with one class only) is NaN, never a made-up value.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from ddso.errors import UserError

_EPS = 1e-7


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of ``p`` (see the module doc)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, min(bins, len(order))):
        error += len(chunk) * abs(p[chunk].mean() - y[chunk].mean())
    return float(error / len(y))


def binary_report(y, p, bins: int = 10) -> dict[str, float | int]:
    """The report of predicted probabilities ``p`` against 0/1 labels ``y`` (module doc)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise UserError(f"binary_report: y has shape {y.shape} and p {p.shape}; need equal 1-d")
    if not np.isin(y, (0.0, 1.0)).all():
        raise UserError("binary_report: labels must be 0 or 1")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise UserError("binary_report: predictions must be probabilities in [0, 1]")
    positives = int(y.sum())
    both = 0 < positives < len(y)
    clipped = np.clip(p, _EPS, 1 - _EPS)
    return {
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])) if len(y) else float("nan"),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
        "ece": calibration_error(y, p, bins),
        "rows": int(len(y)),
        "positives": positives,
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_prediction": float(p.mean()) if len(y) else float("nan"),
    }
