"""The feature registry: every served feature's name, dtype, window, version and meaning.

Features are defined as code in :mod:`ddso.features.behaviour` and
:mod:`ddso.features.financial`; this registry describes them, and a test checks that it
names exactly the columns those functions produce, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddso.features.sets import FEATURE_SET, FEATURE_SET_VERSION


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    dtype: str
    window_days: int | None
    """Calendar-day window (today included), or None for a point-in-time value."""
    group: str
    description: str
    version: int = FEATURE_SET_VERSION
    feature_set: str = FEATURE_SET


def _f(name: str, window: int | None, group: str, text: str, dtype: str = "float64") -> FeatureSpec:
    return FeatureSpec(name, dtype, window, group, text)


FEATURES: tuple[FeatureSpec, ...] = (
    _f("recency_days", None, "rfm", "Days since the last purchase (3650 if none)."),
    _f("frequency_30d", 30, "rfm", "Purchases in the last 30 days."),
    _f("frequency_90d", 90, "rfm", "Purchases in the last 90 days."),
    _f("frequency_365d", 365, "rfm", "Purchases in the last 365 days."),
    _f("monetary_30d", 30, "rfm", "Net spend (after discounts) in the last 30 days."),
    _f("monetary_90d", 90, "rfm", "Net spend in the last 90 days."),
    _f("monetary_365d", 365, "rfm", "Net spend in the last 365 days."),
    _f("avg_order_value_365d", 365, "rfm", "Net spend per purchase over 365 days."),
    _f("views_7d", 7, "behaviour", "Product views in the last 7 days."),
    _f("views_30d", 30, "behaviour", "Product views in the last 30 days."),
    _f("clicks_7d", 7, "behaviour", "Clicks in the last 7 days."),
    _f("clicks_30d", 30, "behaviour", "Clicks in the last 30 days."),
    _f("cart_adds_30d", 30, "behaviour", "Items added to a cart in the last 30 days."),
    _f("cart_abandonment_30d", 30, "behaviour", "Share of cart adds not followed by a purchase."),
    _f("sessions_30d", 30, "behaviour", "Web/app sessions in the last 30 days."),
    _f("sessions_90d", 90, "behaviour", "Web/app sessions in the last 90 days."),
    _f("discount_share_365d", 365, "behaviour", "Share of gross spend given as discount."),
    _f("contacts_7d", 7, "crm", "CRM contacts and offers shown in the last 7 days."),
    _f("contacts_30d", 30, "crm", "CRM contacts and offers shown in the last 30 days."),
    _f("complaints_365d", 365, "crm", "Complaints in the last 365 days."),
    _f("offers_shown_90d", 90, "crm", "Offers shown in the last 90 days."),
    _f("offers_accepted_365d", 365, "crm", "Offers accepted in the last 365 days."),
    _f("days_since_last_event", None, "temporal", "Days since any event (3650 if none)."),
    _f("days_since_last_contact", None, "temporal", "Days since the last contact (3650 if none)."),
    _f("tenure_days", None, "temporal", "Days since the first event."),
    _f("monthly_income", None, "financial", "Sum of monthly income streams."),
    _f("income_streams", None, "financial", "Number of income streams."),
    _f("income_stability", None, "financial", "Income-weighted stability of the streams (0-1)."),
    _f("debt_to_income", None, "financial", "Monthly debt payments / monthly income (cap 10)."),
    _f("credit_utilisation", None, "financial", "Revolving balance / revolving limit."),
    _f("total_debt", None, "financial", "Total outstanding debt balance."),
    _f("on_time_ratio_12m", None, "financial", "Share of payments due in 12 months paid on time."),
    _f("late_payments_12m", None, "financial", "Payments due in 12 months not paid on time."),
    _f("delinquencies_24m", None, "financial", "Delinquencies in the last 24 months."),
    _f("savings_ratio", None, "financial", "Savings / annual income."),
    _f(
        "funnel_stage",
        None,
        "funnel",
        "Stage set by the newest lifecycle event (online).",
        "string",
    ),
    _f(
        "last_crm_outcome", None, "crm", "Outcome of the newest CRM interaction (online).", "string"
    ),
)

BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}
