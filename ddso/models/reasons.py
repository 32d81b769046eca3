"""Reason codes: the factors that moved one customer's score, in plain words.

They come from XGBoost's per-prediction contributions (TreeSHAP), so they are exactly the
factors the model used for this prediction: a feature the model never splits on contributes
0 and is never named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddso.features.behaviour import NEVER_DAYS

_PHRASES: dict[str, str] = {
    "recency_days": "last purchase {v:.0f} days ago",
    "frequency_30d": "{v:.0f} purchases in the last 30 days",
    "frequency_90d": "{v:.0f} purchases in the last 90 days",
    "frequency_365d": "{v:.0f} purchases in the last 12 months",
    "monetary_30d": "spent {v:,.0f} in the last 30 days",
    "monetary_90d": "spent {v:,.0f} in the last 90 days",
    "monetary_365d": "spent {v:,.0f} in the last 12 months",
    "avg_order_value_365d": "average order of {v:,.0f}",
    "views_7d": "{v:.0f} product views this week",
    "views_30d": "{v:.0f} product views in 30 days",
    "clicks_7d": "{v:.0f} clicks this week",
    "clicks_30d": "{v:.0f} clicks in 30 days",
    "cart_adds_30d": "{v:.0f} items added to cart in 30 days",
    "cart_abandonment_30d": "abandons {v:.0%} of carts",
    "sessions_30d": "{v:.0f} sessions in 30 days",
    "sessions_90d": "{v:.0f} sessions in 90 days",
    "discount_share_365d": "{v:.0%} of spend on discount",
    "contacts_7d": "contacted {v:.0f} times this week",
    "contacts_30d": "contacted {v:.0f} times in 30 days",
    "complaints_365d": "{v:.0f} complaints in 12 months",
    "offers_shown_90d": "{v:.0f} offers shown in 90 days",
    "offers_accepted_365d": "{v:.0f} offers accepted in 12 months",
    "days_since_last_event": "last active {v:.0f} days ago",
    "days_since_last_contact": "last contacted {v:.0f} days ago",
    "tenure_days": "customer for {v:.0f} days",
    "open_complaint": "has an open complaint",
    "share_night_365d": "{v:.0%} of activity at night",
    "share_morning_365d": "{v:.0%} of activity in the morning",
    "share_afternoon_365d": "{v:.0%} of activity in the afternoon",
    "share_evening_365d": "{v:.0%} of activity in the evening",
    "weekend_share_365d": "{v:.0%} of activity at weekends",
    "seasonality_index_30d": "activity this month at {v:.1f}x the usual",
    "monthly_income": "monthly income of {v:,.0f}",
    "income_streams": "{v:.0f} income streams",
    "income_stability": "income stability {v:.0%}",
    "debt_to_income": "debt payments take {v:.0%} of income",
    "credit_utilisation": "uses {v:.0%} of credit limits",
    "total_debt": "total debt of {v:,.0f}",
    "on_time_ratio_12m": "{v:.0%} of payments on time in 12 months",
    "late_payments_12m": "{v:.0f} late payments in 12 months",
    "delinquencies_24m": "{v:.0f} delinquencies in 24 months",
    "savings_ratio": "savings cover {v:.1f} years of income",
    "age": "aged {v:.0f}",
    "offer_price": "programme price of {v:,.0f}",
    "offer_months": "a {v:.0f}-month programme",
    "offer_monthly_payment": "monthly payment of {v:,.0f}",
    "offer_margin": "margin of {v:.0%}",
    "offer_payment_to_income": "the payment takes {v:.0%} of income",
    "offer_dti_headroom": "debt-to-income {v:.2f} below the product's limit",
    "hour_of_day": "contact at {v:.0f}h",
    "day_of_week": "contact on weekday {v:.0f} (0 = Monday)",
}


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float
    contribution: float
    """Change of the score's log-odds due to this feature (positive raises the score)."""
    text: str


_NEVER: dict[str, str] = {
    "recency_days": "no purchase on record",
    "days_since_last_event": "no activity on record",
    "days_since_last_contact": "never contacted",
}


def describe(feature: str, value: float) -> str:
    if feature in _NEVER and value >= NEVER_DAYS:
        return _NEVER[feature]
    if feature == "channel_is_preferred":
        return "offered through the preferred channel" if value else "not the preferred channel"
    if feature.startswith(("channel_", "offer_kind_")):
        what = feature.split("_", 2 if feature.startswith("offer_kind_") else 1)[-1]
        kind = "offered by" if feature.startswith("channel_") else "a programme of kind"
        what = what.replace("_", " ")
        return f"{kind} {what}" if value else f"not {kind} {what}"
    template = _PHRASES.get(feature, feature.replace("_", " ") + " = {v:.3g}")
    return template.format(v=value)


def top_reasons(
    contributions: np.ndarray, features: list[str], values: np.ndarray, k: int = 3
) -> list[Reason]:
    """The ``k`` features with the largest absolute contribution (bias excluded, zeros dropped)."""
    contrib = np.asarray(contributions[: len(features)], dtype=float)
    order = np.argsort(-np.abs(contrib), kind="stable")
    out = []
    for i in order[:k]:
        if contrib[i] == 0.0:
            break
        v = float(values[i])
        out.append(Reason(features[i], v, float(contrib[i]), describe(features[i], v)))
    return out
