"""The Serve decision app over real HTTP, on a small generated dataset and a Ray-trained model."""

import socket

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    from ddso.config import load_settings
    from ddso.data.generator import GeneratorConfig, generate
    from pipelines import train_propensity
    from pipelines.up import build_snapshot
    from serve_deployments.app import build_app

    home = tmp_path_factory.mktemp("serve-home")
    data = home / "data"
    generate(GeneratorConfig(customers=600, days=120, seed=11), data, progress=False)
    settings = load_settings(home=home)
    snapshot = build_snapshot(settings, data)
    train_propensity.main(
        train_propensity.Args(
            data=str(data), registry=str(home / "registry"), storage=str(home / "ray_results")
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app(
            {
                "registry": str(home / "registry"),
                "features": str(snapshot),
                "products": str(data / "warehouse" / "products"),
            }
        ),
        name="ddso-test",
        route_prefix="/",
    )
    import pandas as pd

    customers = pd.read_parquet(snapshot, columns=["customer_id"])["customer_id"].tolist()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, customers
    serve.delete("ddso-test")


def test_healthz(served):
    client, customers = served
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["customers"] == len(customers) and body["offers"] > 0


def test_decide_known_customer(served):
    client, customers = served
    r = client.post("/v1/decide", json={"customer_id": customers[0], "context": {"page": "/cards"}})
    assert r.status_code == 200
    d = r.json()
    assert d["customer_id"] == customers[0] and not d["cold_start"]
    assert len(d["reasons"]) <= 3 and all(x["text"] for x in d["reasons"])
    assert d["versions"]["propensity_sha256"] and d["versions"]["features"] == "customer:v1"
    assert (d["action"]["offer_id"] is None) or (d["action"]["offer_id"] in d["eligible_offers"])


def test_unknown_customer_gets_cold_start_and_no_contact(served):
    client, _ = served
    d = client.post("/v1/decide", json={"customer_id": "NOBODY-123"}).json()
    assert d["cold_start"] and d["action"] == {"channel": None, "offer_id": None}
    assert "consent" in d["explanation"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "customer_id"),
        ({"customer_id": "C1", "colour": "red"}, "colour"),
        ({"customer_id": "has spaces"}, "customer_id"),
        ({"customer_id": "C1", "context": {"page": 3}}, "page"),
    ],
)
def test_bad_input_is_422_naming_the_field(served, body, field):
    client, _ = served
    r = client.post("/v1/decide", json=body)
    assert r.status_code == 422
    assert field in str(r.json()["detail"])


def test_malformed_json_is_422_not_500(served):
    client, _ = served
    r = client.post(
        "/v1/decide", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
