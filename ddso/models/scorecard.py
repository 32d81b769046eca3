"""A transparent financial-health scorecard: the assessment until a trained model is promoted.

Points on a 0-1000 scale from the financial features, each term monotone in the direction the
domain demands (more delinquencies, debt or utilisation never raise the score; more on-time
payments, savings and stable income never lower it). Bands: A >= 700, B >= 600, C >= 500,
D >= 400, else E.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ddso.schemas.base import Band

_BAND_FLOORS: tuple[tuple[float, Band], ...] = (
    (700, Band.A),
    (600, Band.B),
    (500, Band.C),
    (400, Band.D),
)
SCORECARD_VERSION = "scorecard-1"


def health_score(f: Mapping[str, float]) -> float:
    points = (
        560.0
        - 220.0 * min(f["debt_to_income"], 1.5)
        + 300.0 * (f["on_time_ratio_12m"] - 0.8)
        - 60.0 * min(f["delinquencies_24m"], 5.0)
        - 120.0 * min(f["credit_utilisation"], 1.2)
        + 100.0 * min(f["savings_ratio"], 1.0)
        + 100.0 * (f["income_stability"] - 0.5)
    )
    return float(min(max(points, 0.0), 1000.0))


def band(score: float) -> Band:
    for floor, b in _BAND_FLOORS:
        if score >= floor:
            return b
    return Band.E


# Points for a model's probability of a bad outcome, on the same 0-1000 scale and bands:
# the industry's "points to double the odds" scaling, 600 points at good:bad odds of 19:1
# (5 % bad) and 50 more points each time the odds double. So A (>= 700) is below ~1.3 % bad,
# B below 5 %, C below ~17 %, D below ~46 %.
ANCHOR_POINTS, ANCHOR_ODDS, POINTS_TO_DOUBLE = 600.0, 19.0, 50.0


def score_from_probability(p_bad: float) -> float:
    """0-1000 points for a probability of a bad outcome (higher points: healthier)."""
    p = min(max(float(p_bad), 1e-6), 1 - 1e-6)
    points = ANCHOR_POINTS + POINTS_TO_DOUBLE * math.log2(((1 - p) / p) / ANCHOR_ODDS)
    return float(min(max(points, 0.0), 1000.0))
