"""One rule table, two entry points: per-offer reasons and the vectorised catalogue mask."""

import numpy as np
import pandas as pd
import pytest

from ddso.policy.eligibility import eligible_mask, why_ineligible
from ddso.schemas.base import Band

pytestmark = pytest.mark.unit

CATALOGUE = pd.DataFrame(
    {
        "product_id": ["free", "prime", "low_dti", "adult", "earner"],
        "eligibility_min_band": [None, "B", None, None, None],
        "eligibility_max_debt_to_income": [np.nan, np.nan, 0.3, np.nan, np.nan],
        "eligibility_min_age": [np.nan, np.nan, np.nan, 25, np.nan],
        "eligibility_min_income_monthly": [np.nan, np.nan, np.nan, np.nan, 3000],
    }
)
GOOD = {"band": "A", "debt_to_income": 0.2, "age": 40, "monthly_income": 5000}


def limits_of(row: pd.Series) -> dict:
    return {
        c.removeprefix("eligibility_"): row[c] for c in CATALOGUE.columns if c.startswith("elig")
    }


@pytest.mark.parametrize(
    ("facts", "expected", "reason"),
    [
        (GOOD, [1, 1, 1, 1, 1], None),
        ({**GOOD, "band": Band.C}, [1, 0, 1, 1, 1], "band C is below the minimum B"),
        ({**GOOD, "debt_to_income": 0.45}, [1, 1, 0, 1, 1], "debt-to-income 0.45 exceeds 0.30"),
        ({**GOOD, "age": 22}, [1, 1, 1, 0, 1], "age 22 is below 25"),
        ({**GOOD, "monthly_income": 2000}, [1, 1, 1, 1, 0], "monthly income 2,000 is below 3,000"),
        ({"band": "A"}, [1, 1, 0, 0, 0], "unknown"),
    ],
)
def test_mask_and_reasons_agree(facts, expected, reason):
    mask = eligible_mask(CATALOGUE, facts)
    assert mask.astype(int).tolist() == expected
    reasons = [why_ineligible(limits_of(row), facts) for _, row in CATALOGUE.iterrows()]
    assert [r is None for r in reasons] == [bool(e) for e in expected]
    if reason:
        assert any(reason in r for r in reasons if r)
