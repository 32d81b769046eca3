import json

import pytest

from ddso.errors import EventParseError
from ddso.schemas.events import (
    EVENT_MODELS,
    EVENT_TYPES,
    encode_event,
    parse_event,
    parse_event_obj,
)

pytestmark = pytest.mark.unit

BASE = {
    "event_id": "e1",
    "customer_id": "C1",
    "event_time": "2025-03-01T10:00:00+02:00",
    "source": "web",
}

EXAMPLES = {
    "session_start": {"session_id": "s1", "device": "mobile", "traffic_source": "paid"},
    "view": {"session_id": "s1", "product_id": "P1", "price": 12.5},
    "click": {"session_id": "s1", "product_id": "P1"},
    "cart_add": {"session_id": "s1", "product_id": "P1", "quantity": 2, "unit_price": 3.0},
    "cart_remove": {"session_id": "s1", "product_id": "P1", "quantity": 1},
    "purchase": {
        "sale_id": "S1",
        "channel": "web",
        "lines": [{"product_id": "P1", "quantity": 2, "unit_price": 5.0, "discount": 0.1}],
    },
    "crm_call": {"interaction_id": "I1", "outcome": "positive", "duration_s": 120},
    "crm_email": {"interaction_id": "I2", "outcome": "no_answer"},
    "crm_meeting": {"interaction_id": "I3", "outcome": "neutral", "duration_s": 1800},
    "complaint": {"complaint_id": "K1", "category": "fees", "severity": 3},
    "offer_shown": {"offer_id": "O1", "product_id": "P9", "channel": "email"},
    "offer_accepted": {
        "offer_id": "O1",
        "product_id": "P9",
        "channel": "email",
        "decision_id": "D1",
    },
    "offer_declined": {"offer_id": "O1", "product_id": "P9", "channel": "sms"},
    "enrollment": {"enrollment_id": "N1", "product_id": "P9", "monthly_payment": 99.0},
    "program_payment": {"enrollment_id": "N1", "amount": 99.0, "days_late": 0},
    "graduation": {"enrollment_id": "N1"},
    "dropout": {"enrollment_id": "N1", "reason": "missed_payments"},
    "churn": {"reason": "inactive"},
}


def make(kind: str, **changes) -> dict:
    return {**BASE, "type": kind, **EXAMPLES[kind], **changes}


def test_every_event_type_has_an_example_and_round_trips():
    assert set(EXAMPLES) == set(EVENT_TYPES) and len(EVENT_TYPES) == 18
    for kind in EVENT_TYPES:
        event = parse_event(json.dumps(make(kind)).encode())
        assert type(event) is EVENT_MODELS[kind]
        assert event.event_time.utcoffset().total_seconds() == 0  # normalised to UTC
        assert event.event_time.hour == 8
        assert parse_event(encode_event(event)) == event


def test_purchase_total():
    assert parse_event_obj(make("purchase")).total == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (b"{not json", "bad_json", None),
        (b"[1, 2]", "not_object", None),
        (json.dumps({**BASE, "type": "teleport"}).encode(), "unknown_type", "type"),
        (
            json.dumps({k: v for k, v in make("view").items() if k != "type"}).encode(),
            "schema",
            None,
        ),
        (json.dumps(make("view")).replace("12.5", "NaN").encode(), "non_finite", "price"),
        (json.dumps(make("view")).replace("12.5", "1e999").encode(), "non_finite", "price"),
        (json.dumps(make("view", price=-1)).encode(), "schema", "price"),
        (
            json.dumps(make("view", event_time="2025-03-01T10:00:00")).encode(),
            "schema",
            "event_time",
        ),
        (json.dumps(make("view", extra_field=1)).encode(), "schema", "extra_field"),
        (
            json.dumps(make("view", customer_id="bad id with spaces")).encode(),
            "schema",
            "customer_id",
        ),
        (json.dumps(make("purchase", lines=[])).encode(), "schema", "lines"),
        (json.dumps(make("complaint", severity=9)).encode(), "schema", "severity"),
    ],
)
def test_rejections_name_reason_and_field(payload, reason, field):
    with pytest.raises(EventParseError) as e:
        parse_event(payload)
    assert e.value.reason == reason
    if field:
        assert f"'{field}" in e.value.detail


def test_oversize_is_rejected_before_parsing():
    big = json.dumps(make("click", element="x" * 150)).encode()
    with pytest.raises(EventParseError) as e:
        parse_event(big, max_bytes=100)
    assert e.value.reason == "oversize"


def test_error_never_echoes_the_payload():
    secret = "jane.doe@example.com"
    with pytest.raises(EventParseError) as e:
        parse_event(json.dumps(make("click", element=secret, extra=secret)).encode())
    assert secret not in str(e.value)
