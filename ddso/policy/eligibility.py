"""Product eligibility rules: one table, used per offer (with reasons) and over a catalogue.

A product's ``eligibility`` (``Product.eligibility`` in the schemas; flattened as
``eligibility_<rule>`` columns in the products table) sets limits on customer facts. Both the
arbitration of one decision (:func:`why_ineligible`, which names the rule broken) and the
recommender's catalogue filter (:func:`eligible_mask`, vectorised) read :data:`RULES`, so the
two can never disagree. A fact that is unknown fails its rule: offering a financial product
to someone who cannot be assessed is the costly mistake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ddso.schemas.base import Band

BAND_RANK: dict[str, int] = {b.value: i for i, b in enumerate(Band)}  # A = 0 (best) .. E = 4


@dataclass(frozen=True)
class Rule:
    limit: str
    """Name of the limit (``eligibility_<limit>`` in the products table)."""
    fact: str
    """The customer fact it is checked against."""
    kind: str
    """``band`` (fact no worse than the limit), ``max`` (fact <= limit) or ``min``."""
    message: str


RULES: tuple[Rule, ...] = (
    Rule("min_band", "band", "band", "band {value} is below the minimum {limit}"),
    Rule(
        "max_debt_to_income",
        "debt_to_income",
        "max",
        "debt-to-income {value:.2f} exceeds {limit:.2f}",
    ),
    Rule("min_age", "age", "min", "age {value:.0f} is below {limit:.0f}"),
    Rule(
        "min_income_monthly",
        "monthly_income",
        "min",
        "monthly income {value:,.0f} is below {limit:,.0f}",
    ),
)


def _missing(value: Any) -> bool:
    # NaN is the one value unequal to itself (np.isnan costs ~20x more on a scalar; every
    # decision checks every offer's rules).
    return value is None or (isinstance(value, float | np.floating) and value != value)


def why_ineligible(limits: Mapping[str, Any], facts: Mapping[str, Any]) -> str | None:
    """The first rule ``facts`` break under ``limits`` (names as in :data:`RULES`), or None."""
    for rule in RULES:
        limit = limits.get(rule.limit)
        if _missing(limit):
            continue
        value = facts.get(rule.fact)
        if _missing(value):
            return f"{rule.fact.replace('_', ' ')} unknown, and the product requires it"
        if rule.kind == "band":
            limit, value = str(getattr(limit, "value", limit)), str(getattr(value, "value", value))
            broken = BAND_RANK[value] > BAND_RANK[limit]
        elif rule.kind == "max":
            broken = float(value) > float(limit)
        else:
            broken = float(value) < float(limit)
        if broken:
            return rule.message.format(value=value, limit=limit)
    return None


def eligible_mask(products: pd.DataFrame, facts: Mapping[str, Any]) -> np.ndarray:
    """True where the customer meets every rule a product sets (``eligibility_*`` columns)."""
    ok = np.ones(len(products), dtype=bool)
    for rule in RULES:
        column = f"eligibility_{rule.limit}"
        if column not in products:
            continue
        value = facts.get(rule.fact)
        if rule.kind == "band":
            limit = products[column].map(BAND_RANK).to_numpy(dtype=float)
            rank = np.nan if _missing(value) else BAND_RANK[str(getattr(value, "value", value))]
            meets = rank <= limit
        else:
            limit = products[column].to_numpy(dtype=float)
            v = np.nan if _missing(value) else float(value)
            meets = v <= limit if rule.kind == "max" else v >= limit
        ok &= np.isnan(limit) | meets
    return ok
