from datetime import UTC, datetime

import pytest

from ddso.features.financial import FEATURE_COLUMNS, financial_features, profile_to_frame
from ddso.schemas.warehouse import FinancialProfile

pytestmark = pytest.mark.unit


def profile(**changes):
    base = dict(
        customer_id="C1",
        as_of=datetime(2025, 1, 1, tzinfo=UTC),
        income_streams=[
            {"kind": "salary", "monthly_amount": 3000, "months_observed": 24, "stability": 0.9},
            {"kind": "rental", "monthly_amount": 1000, "months_observed": 12, "stability": 0.5},
        ],
        debts=[
            {"kind": "credit_card", "balance": 1500, "monthly_payment": 200, "credit_limit": 5000},
            {"kind": "auto_loan", "balance": 9000, "monthly_payment": 400},
        ],
        savings_balance=12000,
        payments_due_12m=24,
        payments_on_time_12m=21,
        delinquencies_24m=2,
    )
    return FinancialProfile(**{**base, **changes})


def test_features_by_hand():
    f = financial_features(profile_to_frame(profile())).iloc[0]
    assert f["monthly_income"] == 4000 and f["income_streams"] == 2
    assert f["income_stability"] == pytest.approx((3000 * 0.9 + 1000 * 0.5) / 4000)
    assert f["debt_to_income"] == pytest.approx(600 / 4000)
    assert f["credit_utilisation"] == pytest.approx(1500 / 5000)  # instalment loans excluded
    assert f["total_debt"] == 10500
    assert f["on_time_ratio_12m"] == pytest.approx(21 / 24) and f["late_payments_12m"] == 3
    assert f["delinquencies_24m"] == 2
    assert f["savings_ratio"] == pytest.approx(12000 / 48000)
    assert set(FEATURE_COLUMNS) <= set(f.index)


def test_edge_cases_stay_finite():
    f = financial_features(
        profile_to_frame(
            profile(income_streams=[], debts=[], payments_due_12m=0, payments_on_time_12m=0)
        )
    ).iloc[0]
    assert f["monthly_income"] == 0 and f["debt_to_income"] == 0 and f["credit_utilisation"] == 0
    assert f["on_time_ratio_12m"] == 1.0 and f["savings_ratio"] == 0
    g = financial_features(profile_to_frame(profile(income_streams=[]))).iloc[0]
    assert g["debt_to_income"] == 10.0  # debt without income: capped, not inf
