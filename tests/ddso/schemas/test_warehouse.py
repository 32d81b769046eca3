from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ddso.pii import pseudonymise
from ddso.schemas.base import Channel
from ddso.schemas.warehouse import WAREHOUSE_TABLES, Customer, FinancialProfile, Product

pytestmark = pytest.mark.unit


def customer(**changes):
    base = dict(
        customer_id="C1",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        birth_year=1980,
        city_id="CT1",
        email_pseudonym=pseudonymise("a@b.c", b"k", kind="email"),
        preferred_channel="email",
        consent={"email": True},
        acquisition_source="web",
    )
    return Customer(**{**base, **changes})


def test_customer_contact_only_as_pseudonym():
    c = customer()
    assert c.consent.allows(Channel.EMAIL) and not c.consent.allows(Channel.SMS)
    with pytest.raises(ValidationError, match="email_pseudonym"):
        customer(email_pseudonym="jane@example.com")
    with pytest.raises(ValidationError, match="email"):
        customer(email="jane@example.com")  # no raw contact field exists


def test_financial_profile_rules_and_totals():
    fp = FinancialProfile(
        customer_id="C1",
        as_of=datetime(2025, 1, 1, tzinfo=UTC),
        income_streams=[
            {"kind": "salary", "monthly_amount": 3000, "months_observed": 24, "stability": 0.9},
            {"kind": "rental", "monthly_amount": 500, "months_observed": 12, "stability": 0.6},
        ],
        debts=[
            {"kind": "credit_card", "balance": 1200, "monthly_payment": 100, "credit_limit": 5000}
        ],
        savings_balance=2000,
        payments_due_12m=12,
        payments_on_time_12m=11,
        delinquencies_24m=1,
    )
    assert fp.monthly_income == 3500 and fp.monthly_debt_payments == 100
    with pytest.raises(ValidationError, match="must not exceed"):
        FinancialProfile(**{**fp.model_dump(), "payments_on_time_12m": 13})
    with pytest.raises(ValidationError, match="finite"):
        FinancialProfile(**{**fp.model_dump(), "savings_balance": float("inf")})


def test_program_fields_come_together():
    base = dict(
        product_id="P1",
        name="Credit builder",
        description="x",
        brand_id="B",
        category_id="C",
        subcategory_id="S",
        price=100,
        margin=0.3,
    )
    Product(**base, program_kind="credit_builder", program_months=12)
    with pytest.raises(ValidationError, match="together"):
        Product(**base, program_kind="credit_builder")


def test_every_table_forbids_extra_fields_and_nan():
    for model in WAREHOUSE_TABLES.values():
        assert model.model_config["extra"] == "forbid"
        assert model.model_config["allow_inf_nan"] is False
