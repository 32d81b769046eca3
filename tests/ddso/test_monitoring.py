"""PSI, the drift reference saved with a model, and the streaming drift monitor."""

import math

import numpy as np
import pandas as pd
import pytest

from ddso.errors import DataFileError
from ddso.monitoring import (
    DRIFT_REFERENCE_FILE,
    DriftMonitor,
    DriftReference,
    psi,
    psi_level,
    psi_of_samples,
    quantile_edges,
    shares,
)

pytestmark = pytest.mark.unit


def test_psi_matches_the_hand_computed_value():
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([0.5, 0.5], [0.25, 0.75], eps=0) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5), rel=1e-12)
    assert psi([10, 10], [5, 15], eps=0) == pytest.approx(0.274653, abs=1e-6)  # counts
    assert psi([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_psi_smooths_empty_bins_to_a_large_finite_value():
    value = psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5])
    assert math.isfinite(value) and value > 1.0
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])


def test_levels_follow_the_usual_thresholds():
    assert [psi_level(v) for v in (0.0, 0.09, 0.1, 0.25, 0.26)] == [
        "stable", "stable", "moderate", "moderate", "significant"]


def test_shift_is_detected_and_the_same_distribution_is_not():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 20_000)
    assert psi_of_samples(reference, rng.normal(0, 1, 5_000)) < 0.02
    assert psi_of_samples(reference, rng.normal(0.5, 1, 5_000)) > 0.2
    assert psi_of_samples(reference, rng.normal(1.0, 1, 5_000)) > 0.25


def test_bins_are_right_closed_quantiles_with_nan_apart():
    edges = quantile_edges([0, 0, 0, 0, 1, 1, 2, 3, np.nan, np.inf], bins=4)
    assert edges.tolist() == [0.0, 1.0]  # duplicate cut points dropped, inf and NaN ignored
    # (-inf, 0], (0, 1], (1, inf), NaN
    assert shares(edges, [0, 0, 0.5, 1, 7, np.nan, np.inf, -np.inf]).tolist() == [
        3 / 8, 2 / 8, 2 / 8, 1 / 8]


def test_constant_and_all_nan_features():
    frame = pd.DataFrame({"const": [3.0] * 100, "empty": [np.nan] * 100})
    ref = DriftReference.fit(frame)
    assert ref.bins["const"].edges.tolist() == [3.0]
    assert ref.bins["const"].expected.tolist() == [1.0, 0.0, 0.0]
    assert ref.bins["empty"].edges.size == 0
    assert ref.bins["empty"].expected.tolist() == [0.0, 1.0]
    same = ref.psi(frame)
    assert same == {"const": pytest.approx(0.0), "empty": pytest.approx(0.0)}
    moved = ref.psi(pd.DataFrame({"const": [4.0] * 100, "empty": [1.0] * 100}))
    assert moved["const"] > 1 and moved["empty"] > 1


def test_reference_json_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.integers(0, 3, 500),
                          "c": np.where(rng.random(500) < 0.1, np.nan, rng.random(500))})
    ref = DriftReference.fit(frame, ["a", "b", "c"])
    back = DriftReference.load(ref.save(tmp_path / DRIFT_REFERENCE_FILE))
    assert back.features == ["a", "b", "c"] and back.rows == 500
    for name in ref.features:
        assert np.array_equal(back.bins[name].edges, ref.bins[name].edges)
        assert np.array_equal(back.bins[name].expected, ref.bins[name].expected)
    assert back.to_dict() == ref.to_dict()


def test_a_corrupt_reference_names_the_file(tmp_path):
    path = tmp_path / DRIFT_REFERENCE_FILE
    path.write_text('{"format": 1, "rows": 1, "features": {"a": {"edges": [1, 0], '
                    '"expected": [1, 0, 0, 0]}}}')
    with pytest.raises(DataFileError, match=DRIFT_REFERENCE_FILE):
        DriftReference.load(path)


def _frame(rng, n, shift=0.0):
    return pd.DataFrame({
        "x": rng.normal(shift, 1, n),
        "count": rng.poisson(2 + 3 * shift, n).astype(float),
        "sometimes": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
    })


def test_monitor_matches_the_batch_psi_and_detects_a_shift():
    rng = np.random.default_rng(2)
    ref = DriftReference.fit(_frame(rng, 20_000))
    served = _frame(rng, 3_000)
    monitor = DriftMonitor(ref, half_life=1e12, block=100, min_observations=1000)
    for i, row in enumerate(served.to_dict("records")):
        if i == 500:
            assert monitor.psi() == {}  # too few in the window yet
        monitor.update(row)
    assert monitor.observations == pytest.approx(3_000)
    got = monitor.psi()
    assert got == pytest.approx(ref.psi(served), rel=1e-6)
    assert max(got.values()) < 0.02

    shifted = DriftMonitor(ref, half_life=1e12, min_observations=1000)
    for row in _frame(rng, 3_000, shift=1.0).to_dict("records"):
        shifted.update(row)
    value = shifted.psi()
    assert value["x"] > 0.25 and value["count"] > 0.25 and value["sometimes"] < 0.02


def test_monitor_forgets_old_vectors_and_counts_missing_features_as_nan():
    rng = np.random.default_rng(3)
    ref = DriftReference.fit(_frame(rng, 10_000))
    monitor = DriftMonitor(ref, half_life=500, block=50, min_observations=100)
    for row in _frame(rng, 5_000, shift=2.0).to_dict("records"):
        monitor.update(row)
    assert monitor.psi()["x"] > 1
    for row in _frame(rng, 10_000).to_dict("records"):
        monitor.update(row)
    assert monitor.psi()["x"] < 0.05  # 20 half-lives later the shift is forgotten
    assert monitor.observations == pytest.approx(500 / math.log(2), rel=0.1)

    for _ in range(2_000):
        monitor.update({"x": 0.0, "count": 2.0})  # "sometimes" missing: the NaN bin
    assert monitor.shares()["sometimes"][-1] > 0.9
