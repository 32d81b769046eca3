from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ddso.errors import UserError
from ddso.features.context import FEATURE_COLUMNS, offer_context
from ddso.features.labels import cutoff_spine, cutoffs_between, offer_spine, program_spine

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def events(*rows):
    cols = ["customer_id", "type", "event_time", "product_id", "channel", "offer_id",
            "enrollment_id", "days_late", "reason"]
    return pd.DataFrame([dict(zip(cols, r + (None,) * (len(cols) - len(r)), strict=True))
                         for r in rows])


def test_cutoffs_are_one_horizon_apart_and_need_three():
    cuts = cutoffs_between(T0, T0 + 200 * DAY, 30 * DAY, 4)
    assert cuts[-1] == T0 + 170 * DAY and np.all(np.diff(cuts) == 30 * DAY) and len(cuts) == 4
    with pytest.raises(UserError, match="at least 3"):
        cutoffs_between(T0, T0 + 80 * DAY, 30 * DAY, 4)


def test_cutoff_spine_labels_only_the_window_and_drops_the_churned():
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "late"],
                              "created_at": [T0 - DAY] * 3 + [T0 + 45 * DAY]})
    ev = events(("a", "churn", T0 + 10 * DAY), ("b", "churn", T0 + 40 * DAY),
                ("c", "purchase", T0 + 30 * DAY))  # exactly at the cutoff: not after it
    cuts = [T0, T0 + 30 * DAY, T0 + 60 * DAY]
    spine = cutoff_spine(ev, customers, cuts, 30 * DAY, ["churn"])
    by = {(r.customer_id, r.timestamp): r.label for r in spine.itertuples()}
    assert by[("a", pd.Timestamp(T0))] == 1 and by[("b", pd.Timestamp(T0))] == 0
    assert ("a", pd.Timestamp(cuts[1])) not in by  # churned before the second cutoff
    assert by[("b", pd.Timestamp(cuts[1]))] == 1
    assert ("late", pd.Timestamp(cuts[1])) not in by and by[("late", pd.Timestamp(cuts[2]))] == 0
    buys = cutoff_spine(ev, customers, cuts, 30 * DAY, ["purchase"])
    assert buys.loc[(buys.customer_id == "c"), "label"].tolist() == [1, 0, 0]


def test_offer_spine_labels_enrolment_in_the_offered_product_within_the_window():
    ev = events(
        ("a", "offer_shown", T0, "P1", "email", "o1"),
        ("a", "enrollment", T0 + 5 * DAY, "P1"),
        ("b", "offer_shown", T0, "P1", "sms", "o2"),
        ("b", "enrollment", T0 + 5 * DAY, "P2"),  # another product: not this offer's
        ("c", "offer_shown", T0, "P1", "call", "o3"),
        ("c", "enrollment", T0 + 40 * DAY, "P1"),  # too late
        ("d", "offer_shown", T0 + 90 * DAY, "P1", "call", "o4"),  # outcome not knowable yet
    )
    spine = offer_spine(ev, T0 + 100 * DAY, 21 * DAY)
    assert dict(zip(spine.offer_id, spine.label, strict=True)) == {"o1": 1, "o2": 0, "o3": 0}


def test_program_spine_labels_graduation_and_missed_payments():
    ev = events(
        ("a", "enrollment", T0, "P1", None, None, "n1"),
        ("a", "program_payment", T0 + 30 * DAY, None, None, None, "n1", 35),
        ("a", "graduation", T0 + 200 * DAY, None, None, None, "n1"),
        ("b", "enrollment", T0, "P1", None, None, "n2"),
        ("b", "dropout", T0 + 90 * DAY, None, None, None, "n2", None, "missed_payments"),
        ("c", "enrollment", T0, "P1", None, None, "n3"),
        ("c", "dropout", T0 + 90 * DAY, None, None, None, "n3", None, "moved"),
        ("d", "enrollment", T0, "P1", None, None, "n4"),  # still running: no row
    )
    spine = program_spine(ev).set_index("enrollment_id")
    assert list(spine.index) == ["n1", "n2", "n3"]
    assert spine["graduated"].tolist() == [1, 0, 0]
    assert spine["missed_payments"].tolist() == [1, 1, 0]


def test_offer_context_features():
    products = pd.DataFrame({
        "product_id": ["P1"], "program_kind": ["card"], "price": [1200.0],
        "program_months": [12.0], "margin": [0.2], "eligibility_max_debt_to_income": [0.5]})
    rows = pd.DataFrame({
        "channel": ["sms", "email"], "product_id": ["P1", "P1"],
        "timestamp": pd.to_datetime(["2025-03-01T09:30:00Z", "2025-03-02T21:00:00Z"]),
        "preferred_channel": ["sms", "sms"], "birth_year": [1985, 1985],
        "monthly_income": [2000.0, 0.0], "debt_to_income": [0.3, 0.6]}, index=[7, 9])
    ctx = offer_context(rows, products)
    assert list(ctx.columns) == list(FEATURE_COLUMNS) and list(ctx.index) == [7, 9]
    first, second = ctx.loc[7], ctx.loc[9]
    assert first["channel_sms"] == 1 and first["channel_email"] == 0
    assert first["channel_is_preferred"] == 1 and second["channel_is_preferred"] == 0
    assert first["offer_kind_card"] == 1 and first["offer_monthly_payment"] == 100.0
    assert first["offer_payment_to_income"] == pytest.approx(0.05)
    assert second["offer_payment_to_income"] == 10.0  # no income: capped, not infinite
    assert first["offer_dti_headroom"] == pytest.approx(0.2) and first["age"] == 40
    assert first["hour_of_day"] == 9 and first["day_of_week"] == 5
    with pytest.raises(UserError, match="unknown product_id 'P9'"):
        offer_context(rows.assign(product_id="P9"), products)
