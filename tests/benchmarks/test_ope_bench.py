"""The OPE benchmark returns flat, finite metrics on a reduced run over the shared OBD sample."""

from __future__ import annotations

import math

import pytest

from benchmarks import ope
from ddso.errors import DataFileError

pytestmark = pytest.mark.unit

ESTIMATORS = ("ips", "snips", "dm", "dr")


def test_reduced_run_returns_flat_metrics():
    metrics = ope.run({"n_boot": "3", "n_sim": "5000", "seed": "1"})
    assert not any(isinstance(v, dict | list) for v in metrics.values())
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert metrics["random_rows"] == metrics["bts_rows"] == 10_000
    assert metrics["obd_bts_ctr_onpolicy"] == pytest.approx(42 / 10_000)
    assert metrics["obd_random_ctr_onpolicy"] == pytest.approx(38 / 10_000)
    for name in ESTIMATORS:
        assert 0 < metrics[f"obd_bts_ctr_{name}"] < 0.05, name
        assert metrics[f"obd_bts_ctr_{name}_relerr"] >= 0
        assert metrics[f"obd_bts_ctr_{name}_boot_std"] >= 0
        assert metrics[f"learned_ctr_{name}_ci_low"] <= metrics[f"learned_ctr_{name}"]
        assert metrics[f"learned_ctr_{name}"] <= metrics[f"learned_ctr_{name}_ci_high"]
    # IPS of the uniform policy on a uniform log is the log's mean click.
    assert metrics["random_ctr_eval"] == pytest.approx(metrics["eval_clicks"] / 5_000)
    assert metrics["learned_top_m"] == 10 and metrics["eval_rows"] == 5_000
    for other in ("random", "bts"):
        assert (metrics[f"learned_minus_{other}_dr_ci_low"]
                <= metrics[f"learned_minus_{other}_dr_ci_high"])


def test_missing_data_dir_names_the_file(tmp_path):
    with pytest.raises(DataFileError, match="prior_bts.yaml"):
        ope.run({"data_dir": str(tmp_path), "n_boot": "1"})
