"""The feature registry: every served feature's name, dtype, window, version and meaning.

Features are defined as code in :mod:`ddso.features.behaviour` and
:mod:`ddso.features.financial`; this registry describes them, and a test checks that it
names exactly the columns those functions produce, so the two cannot drift apart. Group
``graph_item`` holds per-product features (keyed by ``product_id``); every other group is
keyed by ``customer_id``.
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


# (name, window in days or None, group, description[, dtype]); dtype defaults to float64.
_SPECS: tuple[tuple, ...] = (
    ("recency_days", None, "rfm", "Days since the last purchase (3650 if none)."),
    ("frequency_30d", 30, "rfm", "Purchases in the last 30 days."),
    ("frequency_90d", 90, "rfm", "Purchases in the last 90 days."),
    ("frequency_365d", 365, "rfm", "Purchases in the last 365 days."),
    ("monetary_30d", 30, "rfm", "Net spend (after discounts) in the last 30 days."),
    ("monetary_90d", 90, "rfm", "Net spend in the last 90 days."),
    ("monetary_365d", 365, "rfm", "Net spend in the last 365 days."),
    ("avg_order_value_365d", 365, "rfm", "Net spend per purchase over 365 days."),
    ("views_7d", 7, "behaviour", "Product views in the last 7 days."),
    ("views_30d", 30, "behaviour", "Product views in the last 30 days."),
    ("clicks_7d", 7, "behaviour", "Clicks in the last 7 days."),
    ("clicks_30d", 30, "behaviour", "Clicks in the last 30 days."),
    ("cart_adds_30d", 30, "behaviour", "Items added to a cart in the last 30 days."),
    ("cart_abandonment_30d", 30, "behaviour", "Share of cart adds not followed by a purchase."),
    ("sessions_30d", 30, "behaviour", "Web/app sessions in the last 30 days."),
    ("sessions_90d", 90, "behaviour", "Web/app sessions in the last 90 days."),
    ("discount_share_365d", 365, "behaviour", "Share of gross spend given as discount."),
    ("contacts_7d", 7, "crm", "CRM contacts and offers shown in the last 7 days."),
    ("contacts_30d", 30, "crm", "CRM contacts and offers shown in the last 30 days."),
    ("complaints_365d", 365, "crm", "Complaints in the last 365 days."),
    ("open_complaint", 30, "crm", "1 if a complaint in the last 30 days (no resolution event)."),
    ("offers_shown_90d", 90, "crm", "Offers shown in the last 90 days."),
    ("offers_accepted_365d", 365, "crm", "Offers accepted in the last 365 days."),
    ("days_since_last_event", None, "temporal", "Days since any event (3650 if none)."),
    ("days_since_last_contact", None, "temporal", "Days since the last contact (3650 if none)."),
    ("tenure_days", None, "temporal", "Days since the first event."),
    ("share_night_365d", 365, "temporal", "Share of own activity 00-06 UTC over 365 days."),
    ("share_morning_365d", 365, "temporal", "Share of own activity 06-12 UTC over 365 days."),
    ("share_afternoon_365d", 365, "temporal", "Share of own activity 12-18 UTC over 365 days."),
    ("share_evening_365d", 365, "temporal", "Share of own activity 18-24 UTC over 365 days."),
    ("weekend_share_365d", 365, "temporal", "Share of own activity on Saturday and Sunday."),
    (
        "seasonality_index_30d",
        30,
        "temporal",
        "Activity in the last 30 days / the customer's 30-day average over 365 days.",
    ),
    ("monthly_income", None, "financial", "Sum of monthly income streams."),
    ("income_streams", None, "financial", "Number of income streams."),
    ("income_stability", None, "financial", "Income-weighted stability of the streams (0-1)."),
    ("debt_to_income", None, "financial", "Monthly debt payments / monthly income (cap 10)."),
    ("credit_utilisation", None, "financial", "Revolving balance / revolving limit."),
    ("total_debt", None, "financial", "Total outstanding debt balance."),
    ("on_time_ratio_12m", None, "financial", "Share of payments due in 12 months paid on time."),
    ("late_payments_12m", None, "financial", "Payments due in 12 months not paid on time."),
    ("delinquencies_24m", None, "financial", "Delinquencies in the last 24 months."),
    ("savings_ratio", None, "financial", "Savings / annual income."),
    (
        "market_consumer_confidence",
        None,
        "enrichment",
        "Consumer confidence of the city, latest week.",
    ),
    ("market_unemployment_rate", None, "enrichment", "Unemployment rate of the city, latest week."),
    ("market_interest_rate", None, "enrichment", "Average interest rate of the city, latest week."),
    ("market_retail_index", None, "enrichment", "Retail index of the city, latest week."),
    ("city_urban", None, "enrichment", "1 if the customer's city is urban."),
    ("city_log_population", None, "enrichment", "log(1 + population) of the customer's city."),
    ("top_category_share_365d", 365, "affinity", "Share of 365-day spend in the top category."),
    ("top_subcategory_share_365d", 365, "affinity", "Top subcategory's share within it."),
    ("categories_bought_365d", 365, "affinity", "Distinct categories bought in 365 days."),
    ("top_category", 365, "affinity", "Category with the most 365-day spend.", "string"),
    ("top_subcategory", 365, "affinity", "Best subcategory within the top category.", "string"),
    ("web_sessions_28d", 28, "enrichment", "GA4 web sessions in the last 28 days."),
    ("web_avg_session_s_28d", 28, "enrichment", "Mean GA4 session length in seconds."),
    ("web_pages_per_session_28d", 28, "enrichment", "GA4 page views per session."),
    ("web_engaged_share_28d", 28, "enrichment", "Share of engaged GA4 sessions."),
    ("web_mobile_share_28d", 28, "enrichment", "Share of GA4 sessions on mobile."),
    ("web_paid_share_28d", 28, "enrichment", "Share of GA4 sessions from paid traffic."),
    ("copurchase_degree", None, "graph_item", "Per product: distinct co-purchased products."),
    ("coview_degree", None, "graph_item", "Per product: distinct products viewed with it."),
    (
        "copurchase_pagerank",
        None,
        "graph_item",
        "Per product: PageRank of the co-purchase graph x its products (1 = average).",
    ),
    (
        "coview_pagerank",
        None,
        "graph_item",
        "Per product: PageRank of the co-view graph x its products (1 = average).",
    ),
    ("copurchase_degree_mean", None, "graph", "Mean co-purchase degree of the items bought."),
    ("copurchase_pagerank_mean", None, "graph", "Mean co-purchase PageRank of the items bought."),
    (
        "copurchase_overlap",
        None,
        "graph",
        "Share of the items bought that others bought in one sale with another of them.",
    ),
    (
        "copurchase_walk_3",
        None,
        "graph",
        "Mean chance that a 1-3 step co-purchase walk from an item bought is on one.",
    ),
    ("coview_degree_mean", None, "graph", "Mean co-view degree of the items viewed."),
    ("coview_pagerank_mean", None, "graph", "Mean co-view PageRank of the items viewed."),
    (
        "coview_overlap",
        None,
        "graph",
        "Share of the items viewed that others viewed in one session with another of them.",
    ),
    (
        "coview_walk_3",
        None,
        "graph",
        "Mean chance that a 1-3 step co-view walk from an item viewed is on one.",
    ),
    ("funnel_stage", None, "funnel", "Stage set by the newest lifecycle event (online).", "string"),
    ("last_crm_outcome", None, "crm", "Outcome of the newest CRM interaction (online).", "string"),
)

FEATURES: tuple[FeatureSpec, ...] = tuple(
    FeatureSpec(s[0], s[4] if len(s) > 4 else "float64", s[1], s[2], s[3]) for s in _SPECS
)

BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}
