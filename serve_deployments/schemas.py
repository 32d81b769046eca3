"""Request and response bodies of the decision API.

No ``from __future__ import annotations``: FastAPI must see these as classes. Request models
forbid unknown fields and non-finite numbers (CONVENTIONS.md rule 2); events and financial
profiles reuse the models of :mod:`ddso.schemas`.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ddso.schemas.base import Channel, Id, UtcDatetime
from ddso.schemas.warehouse import FinancialProfile


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DecideContext(_Request):
    page: str | None = Field(None, max_length=200, description="Where the customer is, if online.")
    channel_hint: str | None = Field(None, max_length=20)


class DecideRequest(_Request):
    customer_id: Id
    context: DecideContext = DecideContext()


class ReasonOut(BaseModel):
    feature: str
    text: str
    contribution: float


class DecideResponse(BaseModel):
    decision_id: str
    customer_id: str
    action: dict[str, str | None]
    propensity: float = Field(description="Probability the policy takes this action (logged).")
    explored: bool
    scores: dict[str, float | str]
    reasons: list[ReasonOut]
    eligible_offers: list[str]
    explanation: str
    versions: dict[str, str]
    cold_start: bool
    degraded: bool = Field(False, description="True when default features replaced the store.")


class AssessRequest(_Request):
    profile: FinancialProfile
    age: int | None = Field(None, ge=18, le=120, description="Age in years, if known.")


class AssessResponse(BaseModel):
    customer_id: str
    score: float
    band: str
    reasons: list[ReasonOut]
    eligible_programs: list[str]
    graduation_likelihood: dict[str, float]
    model: str


class ProfileResponse(BaseModel):
    customer_id: str
    features: dict[str, float]
    segment: str | None
    cold_start: bool


class Recommendation(BaseModel):
    product_id: str
    score: float


class RecommendationsResponse(BaseModel):
    customer_id: str
    model: str
    items: list[Recommendation]


class FeedbackRequest(_Request):
    decision_id: Id
    customer_id: Id
    outcome: Literal["shown", "accepted", "declined"]
    product_id: Id
    channel: Channel
    event_time: UtcDatetime | None = Field(None, description="When it happened; default: now.")


class FeedbackResponse(BaseModel):
    event_id: str
    accepted: bool


class EventError(BaseModel):
    index: int
    reason: str
    detail: str


class EventsRequest(_Request):
    events: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class EventsResponse(BaseModel):
    accepted: int
    rejected: int
    errors: list[EventError]
