"""The security wiring on a small FastAPI app (no Serve): backends chosen by configuration,
auth before validation, and a backing service that is down answering 503, never 500."""

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from ddso.config import load_settings
from serve_deployments.security import build_security, install, key_store, require


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int


def make_app(settings) -> TestClient:
    app = FastAPI()

    @app.post("/x")
    async def x(body: Body, key_id: str = Depends(require("decide"))) -> dict:
        return {"key_id": key_id, "n": body.n}

    install(app, build_security(settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.unit
def test_file_backend_auth_scope_rate_and_validation(tmp_path):
    settings = load_settings(
        home=tmp_path, security={"rate_limit_per_s": 0.01, "rate_limit_burst": 2}
    )
    assert not build_security(settings).shared
    keys = key_store(settings)
    decide_id, decide = keys.create_key("decide")
    _, ingest = keys.create_key("ingest")
    client = make_app(settings)
    assert client.post("/x", json={"bad": 1}).status_code == 401  # before the 422
    assert client.post("/x", json={"n": 1}, headers=bearer(ingest)).status_code == 403
    ok = client.post("/x", json={"n": 1}, headers=bearer(decide))
    assert ok.status_code == 200 and ok.json() == {"key_id": decide_id, "n": 1}
    bad = client.post("/x", json={"n": "x"}, headers=bearer(decide))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "n"
    limited = client.post("/x", json={"n": 1}, headers=bearer(decide))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


@pytest.mark.integration
def test_redis_backend_shares_keys(tmp_path, redis_settings, redis_client):
    settings = load_settings(home=tmp_path, redis=redis_settings.model_dump())
    assert build_security(settings).shared
    key_id, token = key_store(settings).create_key("decide")
    assert redis_client.exists(f"{redis_settings.key_prefix}apikey:{key_id}")
    r = make_app(settings).post("/x", json={"n": 2}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["key_id"] == key_id


@pytest.mark.unit
def test_redis_down_is_503_not_500(tmp_path):
    settings = load_settings(
        home=tmp_path, redis={"url": "redis://127.0.0.1:1/0", "socket_timeout_s": 0.2}
    )
    token = "ddso_0123456789ab_" + "x" * 43
    r = make_app(settings).post("/x", json={"n": 1}, headers=bearer(token))
    assert r.status_code == 503 and "redis" in r.json()["detail"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
