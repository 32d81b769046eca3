"""Warehouse tables of the seeds' data model (MV_SetupCustomer, MV_Sales, ...).

One model per table row. The generator writes these tables as Parquet with exactly these
columns (nested models flattened with ``_``), and loaders validate user files against them.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from ddso.schemas.base import (
    Band,
    Channel,
    Count,
    FunnelStage,
    Id,
    Money,
    Pseudonym,
    Ratio,
    ShortText,
    Strict,
    UtcDatetime,
)

# --- geography (MV_SetupArea, MV_SetupCity) -------------------------------------------------


class Area(Strict):
    area_id: Id
    name: ShortText
    region: ShortText


class City(Strict):
    city_id: Id
    area_id: Id
    name: ShortText
    population: Count = Field(le=50_000_000)
    urban: bool


# --- product hierarchy ----------------------------------------------------------------------


class Brand(Strict):
    brand_id: Id
    name: ShortText


class Category(Strict):
    category_id: Id
    name: ShortText


class SubCategory(Strict):
    subcategory_id: Id
    category_id: Id
    name: ShortText


ProgramKind = Literal[
    "debt_consolidation", "credit_builder", "savings_plan", "card", "loan", "insurance"
]


class EligibilityRule(Strict):
    """Who may be offered a product. ``None`` means no limit on that dimension."""

    min_band: Band | None = Field(None, description="Worst assessment band still eligible.")
    max_debt_to_income: float | None = Field(None, ge=0, le=10)
    min_age: int | None = Field(None, ge=18, le=120)
    min_income_monthly: Money | None = None


class Product(Strict):
    """A SKU. Programs (debt consolidation, credit builder, ...) are products with a lifecycle."""

    product_id: Id
    name: ShortText
    description: str = Field(max_length=2000)
    brand_id: Id
    category_id: Id
    subcategory_id: Id
    price: Money
    margin: Ratio = Field(description="Value to the seller as a share of price.")
    program_kind: ProgramKind | None = None
    program_months: int | None = Field(None, ge=1, le=120)
    eligibility: EligibilityRule = EligibilityRule()

    @model_validator(mode="after")
    def _program_fields_together(self) -> Product:
        if (self.program_kind is None) != (self.program_months is None):
            raise ValueError("program_kind and program_months must be given together")
        return self


# --- customers (MV_SetupCustomer) and their financial profile ------------------------------


class ConsentFlags(Strict):
    email: bool = False
    sms: bool = False
    call: bool = False
    app_push: bool = False
    profiling: bool = Field(False, description="Consent to automated profiling and scoring.")

    def allows(self, channel: Channel) -> bool:
        return bool(getattr(self, channel.value))


class Customer(Strict):
    """A customer. Contact data exists only as keyed-HMAC pseudonyms (see ``ddso.pii``)."""

    customer_id: Id
    created_at: UtcDatetime
    birth_year: int = Field(ge=1900, le=2010)
    gender: Literal["f", "m", "x", "unknown"] = "unknown"
    city_id: Id
    email_pseudonym: Pseudonym | None = None
    phone_pseudonym: Pseudonym | None = None
    preferred_channel: Channel
    consent: ConsentFlags
    lifecycle_stage: FunnelStage = FunnelStage.LEAD
    acquisition_source: Literal["web", "app", "branch", "partner", "referral", "campaign"]


class IncomeStream(Strict):
    kind: Literal["salary", "self_employed", "pension", "benefits", "rental", "other"]
    monthly_amount: Money
    months_observed: int = Field(ge=0, le=600)
    stability: Ratio = Field(description="1 - coefficient of variation of monthly amounts.")


class Debt(Strict):
    kind: Literal["mortgage", "credit_card", "personal_loan", "auto_loan", "student_loan", "other"]
    balance: Money
    monthly_payment: Money
    credit_limit: Money | None = Field(None, description="For revolving debt: the limit.")


class FinancialProfile(Strict):
    """A customer's finances as of ``as_of``: what the assessment model reads."""

    customer_id: Id
    as_of: UtcDatetime
    income_streams: list[IncomeStream] = Field(max_length=20)
    debts: list[Debt] = Field(max_length=50)
    savings_balance: Money
    payments_due_12m: Count
    payments_on_time_12m: Count
    delinquencies_24m: Count = Field(le=1000)

    @model_validator(mode="after")
    def _on_time_not_above_due(self) -> FinancialProfile:
        if self.payments_on_time_12m > self.payments_due_12m:
            raise ValueError("payments_on_time_12m must not exceed payments_due_12m")
        return self

    @property
    def monthly_income(self) -> float:
        return sum(s.monthly_amount for s in self.income_streams)

    @property
    def monthly_debt_payments(self) -> float:
        return sum(d.monthly_payment for d in self.debts)


# --- sales (MV_Sales, MV_SalesDetail) --------------------------------------------------------


class Sale(Strict):
    sale_id: Id
    customer_id: Id
    sold_at: UtcDatetime
    channel: Literal["web", "app", "branch", "call_center", "partner"]
    city_id: Id
    total_amount: Money


class SaleDetail(Strict):
    sale_id: Id
    line_no: int = Field(ge=1, le=1000)
    product_id: Id
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money
    discount: Ratio = 0.0


# --- CRM and external enrichment ---------------------------------------------------------------

CrmOutcome = Literal["no_answer", "positive", "neutral", "negative", "callback", "unsubscribed"]


class CrmInteraction(Strict):
    interaction_id: Id
    customer_id: Id
    occurred_at: UtcDatetime
    kind: Literal["call", "email", "meeting", "complaint"]
    agent_id: Id | None = None
    outcome: CrmOutcome
    duration_s: float = Field(0.0, ge=0, le=86_400)


class WebSession(Strict):
    """A GA4-style web or app session."""

    session_id: Id
    customer_id: Id
    started_at: UtcDatetime
    duration_s: float = Field(ge=0, le=86_400)
    device: Literal["desktop", "mobile", "tablet"]
    traffic_source: Literal["organic", "paid", "email", "social", "direct", "referral"]
    page_views: Count
    engaged: bool


class SocialSignal(Strict):
    """Weekly social-media signal for a customer (mentions and sentiment)."""

    customer_id: Id
    week_start: date
    mentions: Count
    sentiment: float = Field(ge=-1, le=1)


class MarketData(Strict):
    """Market conditions by city and week (external feed)."""

    city_id: Id
    week_start: date
    consumer_confidence: float = Field(ge=0, le=200)
    unemployment_rate: Ratio
    avg_interest_rate: float = Field(ge=0, le=1)
    retail_index: float = Field(ge=0, le=1000)


WAREHOUSE_TABLES: dict[str, type[Strict]] = {
    "areas": Area,
    "cities": City,
    "brands": Brand,
    "categories": Category,
    "subcategories": SubCategory,
    "products": Product,
    "customers": Customer,
    "financial_profiles": FinancialProfile,
    "sales": Sale,
    "sales_details": SaleDetail,
    "crm_interactions": CrmInteraction,
    "web_sessions": WebSession,
    "social_signals": SocialSignal,
    "market_data": MarketData,
}
"""Table name (the Parquet folder under a dataset's ``warehouse/``) -> row model."""
