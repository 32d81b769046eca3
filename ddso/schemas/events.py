"""The real-time event stream: one model per event type, one discriminated union, one parser.

Every event carries ``event_id`` (the dedupe key), ``customer_id`` (the partition key),
``event_time`` (UTC, timezone-aware: when it happened, not when it arrived) and ``source``.
``type`` picks the model. The same models are the HTTP request bodies of ``/v1/events``.

:func:`parse_event` is the only way bytes become an :class:`Event`; Kafka consumers, the
local event log, the HTTP ingress and the Spark backfill all call it, so they reject the
same inputs for the same reasons.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError

from ddso.errors import EventParseError
from ddso.schemas.base import Channel, Count, Id, Money, Ratio, ShortText, Strict, UtcDatetime
from ddso.schemas.warehouse import CrmOutcome

DEFAULT_MAX_EVENT_BYTES = 64 * 1024

Source = Literal["web", "app", "crm", "pos", "core_banking", "partner", "api", "simulator"]


class EventBase(Strict):
    event_id: Id
    customer_id: Id
    event_time: UtcDatetime
    source: Source


# --- web / app behaviour -----------------------------------------------------------------


class SessionStart(EventBase):
    type: Literal["session_start"]
    session_id: Id
    device: Literal["desktop", "mobile", "tablet"]
    traffic_source: Literal["organic", "paid", "email", "social", "direct", "referral"]


class View(EventBase):
    type: Literal["view"]
    session_id: Id
    product_id: Id
    price: Money


class Click(EventBase):
    type: Literal["click"]
    session_id: Id
    product_id: Id | None = None
    element: ShortText = "product_card"


class CartAdd(EventBase):
    type: Literal["cart_add"]
    session_id: Id
    product_id: Id
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money


class CartRemove(EventBase):
    type: Literal["cart_remove"]
    session_id: Id
    product_id: Id
    quantity: int = Field(ge=1, le=10_000)


class PurchaseLine(Strict):
    product_id: Id
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money
    discount: Ratio = 0.0


class Purchase(EventBase):
    type: Literal["purchase"]
    sale_id: Id
    channel: Literal["web", "app", "branch", "call_center", "partner"]
    lines: list[PurchaseLine] = Field(min_length=1, max_length=200)

    @property
    def total(self) -> float:
        return sum(ln.quantity * ln.unit_price * (1 - ln.discount) for ln in self.lines)


# --- CRM ---------------------------------------------------------------------------------


class _CrmEvent(EventBase):
    interaction_id: Id
    agent_id: Id | None = None
    outcome: CrmOutcome


class CrmCall(_CrmEvent):
    type: Literal["crm_call"]
    duration_s: float = Field(ge=0, le=86_400)


class CrmEmail(_CrmEvent):
    type: Literal["crm_email"]


class CrmMeeting(_CrmEvent):
    type: Literal["crm_meeting"]
    duration_s: float = Field(ge=0, le=86_400)


class Complaint(EventBase):
    type: Literal["complaint"]
    complaint_id: Id
    category: Literal["fees", "service", "product", "fraud", "other"]
    severity: int = Field(ge=1, le=5)


# --- offers and the program lifecycle ------------------------------------------------------


class _OfferEvent(EventBase):
    offer_id: Id
    product_id: Id
    channel: Channel
    decision_id: Id | None = Field(None, description="The decision that made this offer, if any.")


class OfferShown(_OfferEvent):
    type: Literal["offer_shown"]


class OfferAccepted(_OfferEvent):
    type: Literal["offer_accepted"]


class OfferDeclined(_OfferEvent):
    type: Literal["offer_declined"]


class Enrollment(EventBase):
    """A lead converts: enrolment in a program (the seeds' conversion)."""

    type: Literal["enrollment"]
    enrollment_id: Id
    product_id: Id
    monthly_payment: Money
    decision_id: Id | None = None


class ProgramPayment(EventBase):
    type: Literal["program_payment"]
    enrollment_id: Id
    amount: Money
    days_late: Count = Field(le=3650)

    @property
    def on_time(self) -> bool:
        return self.days_late == 0


class Graduation(EventBase):
    """The program was completed (the seeds' graduation)."""

    type: Literal["graduation"]
    enrollment_id: Id


class Dropout(EventBase):
    type: Literal["dropout"]
    enrollment_id: Id
    reason: Literal["missed_payments", "voluntary", "moved", "other"]


class Churn(EventBase):
    type: Literal["churn"]
    reason: Literal["closed_accounts", "inactive", "competitor", "complaint", "other"]


Event = Annotated[
    SessionStart
    | View
    | Click
    | CartAdd
    | CartRemove
    | Purchase
    | CrmCall
    | CrmEmail
    | CrmMeeting
    | Complaint
    | OfferShown
    | OfferAccepted
    | OfferDeclined
    | Enrollment
    | ProgramPayment
    | Graduation
    | Dropout
    | Churn,
    Field(discriminator="type"),
]
"""Any event; ``type`` selects the model."""

EVENT_MODELS: dict[str, type[EventBase]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in Event.__origin__.__args__  # type: ignore[attr-defined]
}
"""Event type name -> model, in the union's order."""

EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

_REASON_BY_ERROR_TYPE = {
    "union_tag_invalid": "unknown_type",
    "finite_number": "non_finite",
    "json_invalid": "bad_json",
    "json_type": "bad_json",
    "model_type": "not_object",
    "model_attributes_type": "not_object",
    "dict_type": "not_object",
}


def _first_error(err: ValidationError) -> EventParseError:
    e = err.errors(include_url=False)[0]
    reason = _REASON_BY_ERROR_TYPE.get(e["type"], "schema")
    field = ".".join(str(p) for p in e["loc"] if p not in EVENT_TYPES) or "<event>"
    if reason == "bad_json":
        return EventParseError(reason, f"not valid JSON: {e['msg']}")
    if reason == "unknown_type":
        return EventParseError(reason, f"field 'type': {e['msg']}")
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return EventParseError(reason, f"field '{field}': {e['msg']}{more}")


def parse_event(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Event:
    """Parse one JSON-encoded event.

    Raises :class:`EventParseError` whose ``reason`` is one of ``oversize``, ``bad_json``,
    ``not_object``, ``unknown_type``, ``non_finite`` or ``schema``, and whose ``detail``
    names the field and the rule. The message never echoes the payload (it may hold PII).
    """
    if len(data) > max_bytes:
        raise EventParseError("oversize", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        return _EVENT_ADAPTER.validate_json(data)
    except ValidationError as err:
        raise _first_error(err) from None


def parse_event_obj(obj: object) -> Event:
    """Validate an already-decoded event (a dict), with the same rules as :func:`parse_event`."""
    try:
        return _EVENT_ADAPTER.validate_python(obj)
    except ValidationError as err:
        raise _first_error(err) from None


def encode_event(event: EventBase) -> bytes:
    """The canonical JSON bytes of an event, as written to Kafka and the local log."""
    return event.model_dump_json(exclude_none=True).encode()

