"""The shared binary-model lifecycle: time split, Ray Train fit, calibration, report, gate."""

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ddso.errors import UserError
from ddso.models.binary import (
    BinaryModel,
    fit_binary,
    monotone_constraints,
    register_and_gate,
    time_split,
)
from ddso.models.calibration import Calibrator
from ddso.models.registry import ModelRegistry

FEATURES = ["x1", "x2", "x3"]


def frame(n=6_000, days=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    p = 1 / (1 + np.exp(-(-2.5 + 1.5 * x[:, 0] - 0.8 * x[:, 1])))
    return pd.DataFrame({
        "timestamp": pd.Timestamp("2025-01-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, days, n), unit="D"),
        **{f: x[:, i] for i, f in enumerate(FEATURES)},
        "label": (rng.random(n) < p).astype("int32"),
    })


@pytest.mark.unit
def test_time_split_keeps_each_time_on_one_side_and_orders_them():
    split = time_split(frame(), "timestamp", 0.2, 0.2)
    assert split.train["timestamp"].max() < split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() < split.test["timestamp"].min()
    assert split.test["timestamp"].nunique() == 2 and split.valid["timestamp"].nunique() == 2
    assert len(split.train) + len(split.valid) + len(split.test) == 6_000
    many = frame(days=365)  # many distinct times: row shares instead of whole days
    s = time_split(many, "timestamp", 0.2, 0.2)
    assert 0.15 < len(s.test) / len(many) < 0.25
    with pytest.raises(UserError, match="empty"):
        time_split(frame(days=1), "timestamp")
    with pytest.raises(UserError, match="'when' is missing"):
        time_split(frame(), "when")


@pytest.mark.unit
def test_monotone_constraints_string_names_unknown_features():
    assert monotone_constraints(FEATURES, {"x1": 1, "x3": -1}) == "(1,0,-1)"
    with pytest.raises(UserError, match="'x9'"):
        monotone_constraints(FEATURES, {"x9": 1})


@pytest.mark.ray
@pytest.mark.integration
def test_fit_calibrate_report_register_and_gate(ray_session, tmp_path):
    split = time_split(frame(), "timestamp", 0.2, 0.2)
    model = fit_binary(split, FEATURES, "label", {"max_depth": 3, "eta": 0.1, "nthread": 1},
                       storage_path=tmp_path / "ray", monotone={"x1": 1, "x2": -1},
                       run_name="binary-test")
    m = model.metrics
    for key in ("test_auc", "test_pr_auc", "test_log_loss", "test_brier", "test_ece",
                "test_uncalibrated_auc", "valid_auc"):
        assert np.isfinite(m[key]), key
    assert m["test_auc"] > 0.8 and m["test_ece"] < 0.05
    assert m["test_rows"] == len(split.test)
    # Monotone in x1 (+) and x2 (-) whatever the other inputs.
    grid = np.linspace(-3, 3, 61)
    for other in (-1.0, 0.0, 2.0):
        up = model.predict(np.c_[grid, np.full(61, other), np.zeros(61)])
        down = model.predict(np.c_[np.full(61, other), grid, np.zeros(61)])
        assert np.all(np.diff(up) >= -1e-9) and np.all(np.diff(down) <= 1e-9)
    reasons = model.reasons(np.array([2.5, -2.0, 0.0]))
    assert reasons and reasons[0].feature in ("x1", "x2")
    assert all(r.feature != "x3" or r.contribution != 0 for r in reasons)

    registry = ModelRegistry(tmp_path / "registry")
    first, line = register_and_gate(registry, "demo", model, split.test, "label", {})
    assert registry.champion("demo").version == first.version and "first champion" in line
    loaded = BinaryModel.load(registry.get("demo", first.version))
    assert np.allclose(loaded.predict(split.test), model.predict(split.test))
    assert loaded.calibrator.method == model.calibrator.method

    # A candidate trained on shuffled labels is refused with the numbers, on the same rows.
    rng = np.random.default_rng(1)
    noise = xgb.train({"objective": "binary:logistic", "max_depth": 2},
                      xgb.DMatrix(split.train[FEATURES], label=rng.permutation(
                          split.train["label"].to_numpy())), num_boost_round=20)
    worse = BinaryModel(noise, Calibrator("identity"), FEATURES, {"test_auc": 0.5})
    second, line = register_and_gate(registry, "demo", worse, split.test, "label", {})
    assert "refused" in line and "test_auc" in line
    assert registry.champion("demo").version == first.version
    assert registry.stage("demo", second.version) == "candidate"
