from datetime import UTC, datetime

import pandas as pd
import pytest

from ddso.features.affinity import FEATURE_COLUMNS, affinity_features, category_affinity

pytestmark = pytest.mark.unit

AS_OF = datetime(2025, 6, 30, 12, tzinfo=UTC)
PRODUCTS = pd.DataFrame(
    {
        "product_id": ["p1", "p2", "p3", "p4"],
        "category_id": ["cat0", "cat0", "cat1", "cat1"],
        "subcategory_id": ["s00", "s01", "s10", "s11"],
    }
)


def sale(sid, cid, when):
    return {"sale_id": sid, "customer_id": cid, "sold_at": pd.Timestamp(when, tz="UTC")}


def test_top_category_then_top_subcategory_within_it():
    sales = pd.DataFrame(
        [
            sale("S1", "A", "2025-06-01"),
            sale("S2", "A", "2025-06-20"),
            sale("S3", "A", "2025-06-30 13:00"),  # after as_of: ignored
            sale("S4", "A", "2024-06-30"),  # 365 calendar days back: outside the window
            sale("S5", "B", "2025-01-01"),
        ]
    )
    details = pd.DataFrame(
        {
            "sale_id": ["S1", "S1", "S2", "S3", "S4", "S5"],
            "product_id": ["p1", "p3", "p2", "p4", "p4", "p4"],
            "quantity": [1, 1, 3, 100, 100, 1],
            "unit_price": [10.0, 50.0, 10.0, 10.0, 10.0, 5.0],
            "discount": [0.0, 0.5, 0.0, 0.0, 0.0, None],
        }
    )
    f = category_affinity(sales, details, PRODUCTS, AS_OF).set_index("customer_id")
    a = f.loc["A"]
    # cat0: 10 + 30 = 40, cat1: 25 -> cat0 leads with 40/65; within cat0, s01 (30) beats s00 (10)
    assert (a["top_category"], a["top_subcategory"]) == ("cat0", "s01")
    assert a["top_category_share_365d"] == pytest.approx(40 / 65)
    assert a["top_subcategory_share_365d"] == pytest.approx(30 / 40)
    assert a["categories_bought_365d"] == 2
    b = f.loc["B"]
    assert (b["top_category"], b["top_category_share_365d"]) == ("cat1", 1.0)
    assert list(f.columns) == list(FEATURE_COLUMNS)


def test_nobody_bought_anything():
    empty = category_affinity(
        pd.DataFrame([sale("S1", "A", "2026-01-01")]),
        pd.DataFrame(
            {
                "sale_id": ["S1"],
                "product_id": ["p1"],
                "quantity": [1],
                "unit_price": [1.0],
                "discount": [0.0],
            }
        ),
        PRODUCTS,
        AS_OF,
    )
    assert empty.empty and list(empty.columns) == ["customer_id", *FEATURE_COLUMNS]


def test_on_a_generated_dataset(tmp_path):
    from ddso.data.generator import GeneratorConfig, generate

    generate(GeneratorConfig(customers=300, days=60, seed=2), tmp_path / "d", progress=False)
    f = affinity_features(tmp_path / "d" / "warehouse", datetime(2025, 3, 1, tzinfo=UTC))
    assert len(f) > 10 and f["top_category_share_365d"].between(0, 1).all()
    assert (f["top_subcategory_share_365d"] > 0).all() and (f["categories_bought_365d"] >= 1).all()
