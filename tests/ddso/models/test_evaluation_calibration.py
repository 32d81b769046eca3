import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ddso.errors import UserError
from ddso.models.calibration import Calibrator, fit_calibrator
from ddso.models.evaluation import binary_report, calibration_error

pytestmark = pytest.mark.unit


def _calibrated(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 8, n)
    y = (rng.random(n) < p).astype(float)
    return y, p


def test_report_matches_sklearn_and_a_calibrated_score_has_small_ece():
    y, p = _calibrated()
    r = binary_report(y, p)
    assert r["auc"] == pytest.approx(roc_auc_score(y, p))
    assert r["rows"] == len(y) and r["positives"] == int(y.sum())
    assert r["ece"] < 0.01
    assert 0 < r["brier"] < 0.2 and r["log_loss"] > 0
    # The same ranking with probabilities squashed: AUC equal, calibration much worse.
    bad = binary_report(y, p / 4)
    assert bad["auc"] == pytest.approx(r["auc"]) and bad["ece"] > 5 * r["ece"]


def test_undefined_metrics_are_nan_and_bad_input_is_named():
    r = binary_report(np.zeros(10), np.full(10, 0.1))
    assert np.isnan(r["auc"]) and np.isnan(r["pr_auc"]) and r["positives"] == 0
    with pytest.raises(UserError, match="0 or 1"):
        binary_report(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(UserError, match="probabilities"):
        binary_report(np.array([0, 1]), np.array([0.1, np.nan]))
    assert calibration_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrators_repair_a_distorted_score(method):
    y, p = _calibrated(seed=1)
    distorted = p**2  # over-confident low, the ranking kept
    cal = fit_calibrator(y, distorted, method)
    assert cal.method == method
    y2, p2 = _calibrated(seed=2)  # fresh rows: the fit generalises
    fixed = cal.apply(p2**2)
    assert calibration_error(y2, fixed) < 0.5 * calibration_error(y2, p2**2)
    assert np.all(np.diff(cal.apply(np.linspace(0, 1, 101))) >= -1e-12)  # monotone
    again = Calibrator.from_dict(cal.to_dict())
    assert np.array_equal(again.apply(p2), cal.apply(p2))


def test_auto_picks_platt_on_few_positives_and_identity_on_one_class():
    y, p = _calibrated(n=2_000)
    assert fit_calibrator(y, p).method == "platt"
    big_y, big_p = _calibrated(n=40_000)
    assert fit_calibrator(big_y, big_p).method == "isotonic"
    assert fit_calibrator(np.zeros(5), np.full(5, 0.2)).method == "identity"
    with pytest.raises(UserError, match="method"):
        Calibrator.from_dict({"method": "magic"})
