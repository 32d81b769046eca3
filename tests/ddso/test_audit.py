"""The decision audit log: small Parquet files, flushed by count or time, found by id."""

import json
import time

import pytest

from ddso.audit import AuditLog, find_record, make_record, offers_json
from ddso.errors import UserError
from ddso.features.sets import cold_start_features
from ddso.pii import pseudonymise
from ddso.policy.arbitration import CustomerFacts, Offer
from ddso.policy.decide import decide

pytestmark = pytest.mark.unit

KEY = b"k" * 32
OFFERS = [Offer("P1", "Card", "card", price=100.0, margin=0.5)]
FACTS = CustomerFacts({"email": True}, "email", 40)
SCORES = {"propensity": 0.3, "health_score": 600.0, "band": "B", "reasons": []}


def record(decision_id: str, customer_id: str = "CUST-1") -> dict:
    features = {**cold_start_features(), "debt_to_income": 0.1 + 1e-17, "monthly_income": 1e3 / 3}
    d = decide(decision_id, features, FACTS, SCORES, OFFERS, epsilon=0.05, versions={"x": "y"})
    return make_record(
        d,
        customer_id=customer_id,
        pii_key=KEY,
        request={"context": {"page": "/p"}},
        features=features,
        facts=FACTS,
        offers_json=offers_json(OFFERS),
        cold_start=False,
    )


class Collected:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, value))


def test_records_flush_by_count_and_are_found_by_id(tmp_path):
    sink = Collected()
    log = AuditLog(tmp_path, flush_records=3, flush_interval_s=60, sink=sink)
    for i in range(7):
        log.write(record(f"d-{i}"))
    assert len(list(tmp_path.glob("audit-*.parquet"))) == 2
    log.close()
    assert len(list(tmp_path.glob("audit-*.parquet"))) == 3
    found = find_record(tmp_path, "d-5")
    assert found["decision_id"] == "d-5"
    assert found["customer_pseudonym"] == pseudonymise("CUST-1", KEY, kind="customer")
    assert "CUST-1" not in json.dumps(found, default=str)
    assert [k for k, _ in sink.sent] == [f"d-{i}".encode() for i in range(7)]


def test_floats_survive_exactly(tmp_path):
    log = AuditLog(tmp_path, flush_records=1)
    original = record("exact")
    log.write(original)
    log.close()
    found = find_record(tmp_path, "exact")
    assert json.loads(found["features"]) == json.loads(original["features"])
    assert json.loads(found["features"])["monthly_income"] == 1e3 / 3
    assert found["propensity"] == original["propensity"]


def test_a_quiet_buffer_is_flushed_by_time(tmp_path):
    log = AuditLog(tmp_path, flush_records=100, flush_interval_s=0.1)
    log.write(record("late"))
    deadline = time.monotonic() + 5
    while not list(tmp_path.glob("audit-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert find_record(tmp_path, "late")["decision_id"] == "late"
    log.close()


def test_unknown_decision_and_empty_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no audit files"):
        find_record(tmp_path, "x")
    log = AuditLog(tmp_path, flush_records=1)
    log.write(record("a"))
    log.close()
    with pytest.raises(UserError, match="no decision 'b'"):
        find_record(tmp_path, "b")
