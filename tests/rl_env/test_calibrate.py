"""Calibration: maximum likelihood on a generated dataset recovers the generator's model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from ddso.data.generator import GeneratorConfig, generate
from ddso.errors import DataFileError, UserError
from rl_env.calibrate import LATENT_WEIGHTS, calibrate, format_calibration
from rl_env.cli import add_rl_commands

pytestmark = pytest.mark.unit

GENERATOR = {  # ddso.data.funnel: the legacy campaign's response and program models
    "qualify_intercept": -5.8, "qualify_interest": 4.0, "qualify_preferred_channel": 0.8,
    "qualify_fit": 0.8, "qualify_health": 0.2, "accept_intercept": -3.95,
    "accept_interest": 2.0, "accept_fit": 1.2, "accept_health": 0.4, "price_weight": 0.0,
    "graduate_intercept": -0.22, "graduate_health": 1.0, "graduate_fit": 0.6,
    "graduate_interest": 1.0, "late_payment_intercept": -2.2, "late_payment_health": -1.2,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calibrate") / "data"
    generate(GeneratorConfig(customers=20_000, days=180, seed=0), out, progress=False)
    return out


@pytest.fixture(scope="module")
def truth_report(dataset) -> dict:
    return calibrate(dataset, latents="truth")


@pytest.mark.parametrize("name", sorted(GENERATOR))
def test_truth_mode_recovers_the_generator_coefficients(truth_report, name):
    p = truth_report["parameters"][name]
    assert p["free"]
    assert abs(p["fitted"] - GENERATOR[name]) < 4 * p["se"], (name, p)


def test_fit_quality_is_reported(truth_report):
    fit, rates = truth_report["fit"], truth_report["rates"]
    for model in ("offers", "graduation", "late_payment"):
        f = fit[model]
        assert f["converged"] and f["loglik"] >= f["loglik_env_defaults"] - 1e-6
        assert f["loglik"] >= f["loglik_intercepts_only"] and 0 < f["mcfadden_r2"] < 1
    assert rates["acceptance"]["predicted"] == pytest.approx(rates["acceptance"]["observed"],
                                                             rel=0.05)
    deciles = rates["acceptance_by_decile"]
    assert deciles[-1]["observed"] > 5 * deciles[4]["observed"]  # the model ranks offers
    assert truth_report["counts"]["traced"] > 0
    json.dumps(truth_report)
    text = format_calibration(truth_report)
    assert "qualify_intercept" in text and "McFadden" in text


def test_observed_mode_holds_the_interest_weights(dataset):
    report = calibrate(dataset, latents="observed")
    assert report["latents"] == "observed"
    for name in LATENT_WEIGHTS:
        p = report["parameters"][name]
        assert not p["free"] and p["fitted"] == p["env_default"]
        assert name not in report["response_overrides"]
    assert report["parameters"]["qualify_preferred_channel"]["low"] > 0
    rates = report["rates"]["acceptance"]
    assert rates["predicted"] == pytest.approx(rates["observed"], rel=0.05)


def _tiny(root: Path, channel: str = "email", drop: str | None = None) -> Path:
    """A one-offer dataset in the generator's layout (enough to reach the input checks)."""
    t = pd.Timestamp("2025-02-01", tz="UTC")
    events = pd.DataFrame({
        "event_id": ["e1"], "customer_id": ["c1"], "type": ["offer_shown"], "event_time": [t],
        "product_id": ["p1"], "channel": [channel], "offer_id": ["f1"],
        "enrollment_id": [None], "days_late": [None], "outcome": [None], "reason": [None]})
    events = events.astype({"enrollment_id": "string", "outcome": "string", "reason": "string",
                            "days_late": "Int64"})
    if drop:
        events = events.drop(columns=[drop])
    tables = {
        "customers": pd.DataFrame({"customer_id": ["c1"], "birth_year": [1980],
                                   "preferred_channel": ["email"]}),
        "products": pd.DataFrame({"product_id": ["p1"], "price": [1200.0],
                                  "program_kind": ["loan"], "program_months": [12.0]}),
    }
    (root / "events").mkdir(parents=True)
    events.to_parquet(root / "events" / "part-00000.parquet")
    for name, frame in tables.items():
        (root / "warehouse" / name).mkdir(parents=True)
        frame.to_parquet(root / "warehouse" / name / "part-00000.parquet")
    return root


def test_missing_events_folder_names_it(tmp_path):
    with pytest.raises(DataFileError, match="events"):
        calibrate(tmp_path)


def test_missing_event_field_is_named(tmp_path):
    with pytest.raises(DataFileError, match="outcome"):
        calibrate(_tiny(tmp_path, drop="outcome"))


def test_unknown_offer_channel_is_named(tmp_path):
    with pytest.raises(DataFileError, match="'web'"):
        calibrate(_tiny(tmp_path, channel="web"))


def test_truth_latents_without_a_truth_table_is_an_error(tmp_path):
    with pytest.raises(DataFileError, match="truth"):
        calibrate(_tiny(tmp_path), latents="truth")


def test_unknown_latents_mode_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="latents"):
        calibrate(tmp_path, latents="guess")


def test_cli_calibrate_writes_json(dataset, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="ddso")
    add_rl_commands(parser.add_subparsers(dest="command", required=True))
    path = tmp_path / "calibration.json"
    args = parser.parse_args(["rl", "calibrate", str(dataset), "--json", str(path)])
    assert args.func(args) == 0
    assert json.loads(path.read_text())["latents"] == "truth"
    assert "accept_intercept" in capsys.readouterr().out
