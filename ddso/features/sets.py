"""Named, versioned feature sets: which columns a model reads, and their cold-start values."""

from __future__ import annotations

from ddso.features import behaviour, financial

FEATURE_SET = "customer"
FEATURE_SET_VERSION = 1
"""Bumped whenever a definition in :mod:`behaviour` or :mod:`financial` changes meaning."""

CUSTOMER_FEATURES: tuple[str, ...] = (*behaviour.FEATURE_COLUMNS, *financial.FEATURE_COLUMNS)
"""Every customer feature, in model order."""


def cold_start_features() -> dict[str, float]:
    """Feature values of a customer the stores have never seen: no activity, neutral finances."""
    values = {name: 0.0 for name in CUSTOMER_FEATURES}
    for name in ("recency_days", "days_since_last_event", "days_since_last_contact"):
        values[name] = behaviour.NEVER_DAYS
    values["on_time_ratio_12m"] = 1.0
    return values
