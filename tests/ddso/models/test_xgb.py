"""XGBScorer: the direct in-place call gives inplace_predict's numbers, and sound reasons."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import xgboost as xgb

from ddso.models.xgb import XGBScorer

pytestmark = pytest.mark.unit

FEATURES = [f"f{i}" for i in range(8)]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, len(FEATURES))).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 3]) + rng.normal(size=3000) > 0)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
        xgb.DMatrix(x, y.astype(np.float32), feature_names=FEATURES),
        40,
    )
    path = tmp_path_factory.mktemp("model") / "model.ubj"
    booster.save_model(path)
    return booster, XGBScorer(path, FEATURES)


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = (rng.normal(size=(n, len(FEATURES))) * 2).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


def test_predict_equals_inplace_predict_on_random_rows(fitted):
    booster, scorer = fitted
    rows = _rows(2000, seed=1)
    expected = booster.inplace_predict(rows)
    got = np.array([scorer.predict(r[None, :]) for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)


def test_predict_accepts_float64_and_flat_rows(fitted):
    booster, scorer = fitted
    row = _rows(1, seed=2)
    expected = float(booster.inplace_predict(row)[0])
    assert scorer.predict(row.astype(np.float64)) == expected
    assert scorer.predict(row[0]) == expected


def test_vector_orders_values_by_feature(fitted):
    booster, scorer = fitted
    row = _rows(1, seed=3)
    values = dict(zip(reversed(FEATURES), reversed(row[0].tolist()), strict=True))
    np.testing.assert_array_equal(scorer.vector(values), row)
    assert scorer.predict(scorer.vector(values)) == float(booster.inplace_predict(row)[0])


def test_row_of_wrong_width_is_refused(fitted):
    _, scorer = fitted
    with pytest.raises(ValueError, match="broadcast"):
        scorer.predict(np.zeros((1, len(FEATURES) + 1), dtype=np.float32))


def test_contributions_sum_to_the_margin_of_the_prediction(fitted):
    booster, scorer = fitted
    for row in _rows(50, seed=4):
        row = row[None, :]
        contrib = scorer.contributions(row)
        assert contrib.shape == (len(FEATURES) + 1,)
        margin = float(booster.inplace_predict(row, predict_type="margin")[0])
        assert contrib.sum() == pytest.approx(margin, abs=1e-4)
        assert scorer.predict(row) == pytest.approx(1 / (1 + np.exp(-margin)), rel=1e-5)


def test_contributions_equal_xgboosts_own(fitted):
    booster, scorer = fitted
    rows = _rows(50, seed=6)
    rows[::3, 1] = np.nan  # missing values take the default branch in both
    expected = booster.predict(xgb.DMatrix(rows, feature_names=FEATURES), pred_contribs=True)
    for row, want in zip(rows, expected, strict=True):
        np.testing.assert_array_equal(scorer.contributions(row[None, :]), want)


def test_concurrent_callers_get_their_own_rows_scores(fitted):
    booster, scorer = fitted
    rows = _rows(400, seed=5)
    expected = booster.inplace_predict(rows)
    got = np.empty(len(rows), dtype=np.float32)

    def score(part: range) -> None:
        for _ in range(5):
            for i in part:
                got[i] = scorer.predict(rows[i])

    threads = [threading.Thread(target=score, args=(range(k, len(rows), 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(got, expected)
