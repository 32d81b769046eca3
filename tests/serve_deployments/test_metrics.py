"""The decision service's Prometheus metrics, in process (no Serve, no Ray).

A propensity model is fitted with plain XGBoost on the snapshot's rows and saved the way the
training jobs save one (:meth:`BinaryModel.save`, drift reference included), so the service
finds its drift reference through the champion version.
"""

import asyncio

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from ddso.models.binary import BinaryModel
from ddso.models.calibration import Calibrator
from ddso.models.registry import ModelRegistry
from ddso.monitoring import DRIFT_REFERENCE_FILE, DriftReference
from serve_deployments.schemas import DecideRequest
from serve_deployments.service import (
    AppArgs,
    AssessmentClient,
    AssessmentModel,
    DecisionService,
)

pytestmark = pytest.mark.integration

FEATURES = list(CUSTOMER_FEATURES)
CUSTOMERS = 300


def _rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    base = cold_start_features()
    frame = pd.DataFrame({f: base[f] + rng.gamma(2.0, 1.0 + shift, n) for f in FEATURES})
    frame["on_time_ratio_12m"] = rng.uniform(0.5, 1.0, n)
    return frame


def _register(registry: ModelRegistry, train: pd.DataFrame, folder, drift: bool) -> None:
    label = (train[FEATURES[0]] > train[FEATURES[0]].median()).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(train[FEATURES], label=label), num_boost_round=5)
    model = BinaryModel(booster, Calibrator("identity"), FEATURES, {},
                        DriftReference.fit(train, FEATURES) if drift else None)
    registry.register("propensity", model.save(folder), {"features": FEATURES, "metrics": {}})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ddso.data.generator import GeneratorConfig, generate

    home = tmp_path_factory.mktemp("metrics-home")
    data = home / "data"
    generate(GeneratorConfig(customers=40, days=10, seed=5), data, progress=False)
    rng = np.random.default_rng(0)
    snapshot = _rows(rng, CUSTOMERS, shift=1.5)  # the served population moved
    snapshot["customer_id"] = [f"C{i}" for i in range(CUSTOMERS)]
    snapshot["birth_year"] = 1980
    snapshot["preferred_channel"] = "email"
    for c in ("email", "sms", "call", "app_push"):
        snapshot[f"consent_{c}"] = True
    snapshot_path = home / "features_v1_20250101T000000Z.parquet"
    snapshot.to_parquet(snapshot_path, index=False)
    train = _rows(rng, 2000)
    return {"home": home, "data": data, "snapshot": snapshot_path, "train": train}


def _service(setup, registry: str) -> DecisionService:
    args = AppArgs(registry=registry, features=str(setup["snapshot"]),
                   products=str(setup["data"] / "warehouse" / "products"),
                   settings={"home": str(setup["home"])})
    return DecisionService(args, AssessmentClient.local(AssessmentModel(args.registry,
                                                                        args.products)))


def test_decisions_scores_drift_and_model_age_are_exported(setup, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    _register(registry, setup["train"], tmp_path / "m1", drift=True)
    version = registry.champion("propensity")
    assert DRIFT_REFERENCE_FILE in version.metadata["artifacts"]
    service = _service(setup, str(tmp_path / "registry"))
    try:
        body, ready = asyncio.run(service.readyz())
        assert ready and body["drift"] == f"on (propensity:v0001, {len(FEATURES)} features)"
        service.metrics.drift.min_observations = 100
        for i in range(CUSTOMERS):
            service.decide(DecideRequest(customer_id=f"C{i}"))
        service.decide(DecideRequest(customer_id="NOBODY"))  # cold start: not in the drift
        service.metrics.decision("email", "P1", False, arm="treatment")
        text = service.metrics.exposition().body.decode()
    finally:
        service.close()

    assert 'ddso_decisions_total{arm="treatment",channel="email",explored="no",offer="yes"} 1.0' \
        in text
    assert 'ddso_decisions_total{arm="none",' in text
    assert f"ddso_score_propensity_count {CUSTOMERS + 1}.0" in text
    assert 'ddso_score_health_bucket{le="1000.0"}' in text
    assert 'ddso_decision_inputs_total{cold_start="yes",degraded="no"} 1.0' in text
    assert f'ddso_decision_inputs_total{{cold_start="no",degraded="no"}} {CUSTOMERS}.0' in text
    assert 'ddso_model_age_seconds{model="propensity",version="v0001"}' in text
    sha = version.artifact_sha256[:16]
    assert f'ddso_model_info{{model="propensity",sha256="{sha}",version="v0001"}} 1.0' in text
    window = next(line for line in text.splitlines()
                  if line.startswith("ddso_drift_window_decisions "))
    assert float(window.split()[1]) == pytest.approx(CUSTOMERS, rel=0.03)  # slowly decaying
    psi = {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
           for line in text.splitlines() if line.startswith("ddso_feature_psi{")}
    assert set(psi) == set(FEATURES)
    assert psi["monetary_365d"] > 0.25  # shifted on purpose
    assert psi["on_time_ratio_12m"] < 0.1  # same distribution as in training
    assert "NOBODY" not in text and "C1" not in text


def test_a_model_without_a_drift_reference_serves_without_drift_metrics(setup, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    _register(registry, setup["train"], tmp_path / "m1", drift=False)
    service = _service(setup, str(tmp_path / "registry"))
    try:
        body, ready = asyncio.run(service.readyz())
        assert ready and body["drift"] == (
            f"off: propensity:v0001 was registered without {DRIFT_REFERENCE_FILE}")
        service.decide(DecideRequest(customer_id="C1"))
        text = service.metrics.exposition().body.decode()
    finally:
        service.close()
    assert "ddso_feature_psi" not in text and "ddso_model_age_seconds{" in text
