"""Degradation: with no trained propensity model the app still starts, and answers 503 naming
the missing model (readiness and decisions) while the endpoints that need no model work."""

import httpx
import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(serving, tmp_path_factory):
    from ddso.config import load_settings
    from ddso.data.generator import GeneratorConfig, generate
    from ddso.features.sets import cold_start_features
    from serve_deployments.app import build_app
    from serve_deployments.security import key_store

    home = tmp_path_factory.mktemp("degraded-home")
    data = home / "data"
    generate(GeneratorConfig(customers=40, days=10, seed=5), data, progress=False)
    snapshot = home / "features_v1_20250101T000000Z.parquet"
    row = {
        "customer_id": "C1",
        **cold_start_features(),
        "birth_year": 1980,
        "preferred_channel": "email",
        **{f"consent_{c}": True for c in ("email", "sms", "call", "app_push")},
    }
    pd.DataFrame([row]).to_parquet(snapshot, index=False)
    overrides = {"home": str(home)}
    token = key_store(load_settings(**overrides)).create_key("decide")[1]
    app = build_app(
        {
            "registry": str(home / "registry"),
            "features": str(snapshot),
            "products": str(data / "warehouse" / "products"),
            "settings": overrides,
        }
    )
    headers = {"Authorization": f"Bearer {token}"}
    with (
        serving(app, "ddso-degraded") as url,
        httpx.Client(base_url=url, timeout=30, headers=headers) as client,
    ):
        yield client


def test_readyz_is_503_naming_the_missing_model(served):
    r = served.get("/readyz")
    assert r.status_code == 503
    assert r.json()["missing"] == ["propensity"] and "propensity" in r.json()["detail"]


def test_decide_is_503_naming_the_model_never_500(served):
    r = served.post("/v1/decide", json={"customer_id": "C1"})
    assert r.status_code == 503 and "propensity" in r.json()["detail"]


def test_model_free_endpoints_still_answer(served):
    assert served.get("/healthz").status_code == 200
    profile = served.get("/v1/customers/C1/profile")
    assert profile.status_code == 200 and not profile.json()["cold_start"]
    assert served.get("/v1/customers/C1/recommendations", params={"k": 3}).status_code == 200
