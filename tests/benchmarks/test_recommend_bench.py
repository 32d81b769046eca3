"""The recommend benchmark's external baseline (its figures are tested through ``ddso bench
models``, which runs it: tests/benchmarks/test_models_bench.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks import recommend


@pytest.mark.unit
def test_als_is_reproducible_excludes_owned_and_has_no_opinion_on_unseen():
    """u1..u5 buy A and B, u6 only A, u7 C; nobody buys D."""
    rows = [(f"u{i}", p) for i in range(1, 6) for p in "AB"] + [("u6", "A"), ("u7", "C")]
    interactions = pd.DataFrame(rows, columns=["customer_id", "product_id"]).assign(
        weight=1.0, time=pd.Timestamp("2025-01-01", tz="UTC"))
    products = pd.DataFrame({"product_id": list("ABCD")})
    fit = [recommend.ImplicitALS(factors=2, regularization=0.1).fit(interactions, products)
           for _ in range(2)]
    np.testing.assert_array_equal(fit[0].scores("u6"), fit[1].scores("u6"))
    assert np.isnan(fit[0].scores("u6")[3])  # D: never bought, no opinion
    recs = [item for item, _ in fit[0].recommend("u6", 3, exclude=fit[0].owned("u6"))]
    assert recs[0] == "B" and "A" not in recs and "D" not in recs
    assert fit[0].recommend("stranger", 3) == []
