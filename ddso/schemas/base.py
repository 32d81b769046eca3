"""Shared building blocks of the domain schemas: strict models and constrained types."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ddso.pii import PSEUDONYM_PATTERN


class Strict(BaseModel):
    """Base of every ddso schema: unknown fields and NaN/Inf are rejected, values are frozen."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
"""An identifier: 1-64 characters of letters, digits and ``_ . : -``."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware timestamp, normalised to UTC; naive timestamps are rejected."""

Pseudonym = Annotated[str, StringConstraints(pattern=PSEUDONYM_PATTERN)]
"""A keyed-HMAC pseudonym (64 lowercase hex characters); see :mod:`ddso.pii`."""

Money = Annotated[float, Field(ge=0, le=1e9)]
Ratio = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
ShortText = Annotated[str, StringConstraints(max_length=200)]


class Channel(StrEnum):
    """Contact channels, in the order the policy's action space uses them."""

    EMAIL = "email"
    SMS = "sms"
    CALL = "call"
    APP_PUSH = "app_push"


class Band(StrEnum):
    """Financial-assessment bands, A (healthiest) to E."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


class FunnelStage(StrEnum):
    """Where a customer stands in the sales funnel."""

    LEAD = "lead"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    ENROLLED = "enrolled"
    ACTIVE = "active"
    GRADUATED = "graduated"
    DROPPED = "dropped"
    CHURNED = "churned"
