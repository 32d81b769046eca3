"""The Serve decision app over real HTTP, on a small generated dataset and a Ray-trained model.

One app for the whole module (Serve starts in ~10 s): embedded backends (key file, in-process
limiter and idempotency), a small rate-limit burst and body limit so that 429 and 413 are
reachable, and a fast audit flush.
"""

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.serve_deployments.inprocess import FINANCIAL_PROFILE

pytestmark = [pytest.mark.ray, pytest.mark.integration]

BURST = 30
MAX_BODY = 4096


def _wait_for(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def served(serving, tmp_path_factory):
    from ddso.config import load_settings
    from ddso.data.generator import GeneratorConfig, generate
    from ddso.models.registry import ModelRegistry
    from pipelines import train_propensity
    from pipelines.up import build_snapshot
    from serve_deployments.app import build_app
    from serve_deployments.security import key_store
    from tests.serve_deployments.inprocess import register_wide_deep

    home = tmp_path_factory.mktemp("serve-home")
    data = home / "data"
    generate(GeneratorConfig(customers=600, days=120, seed=11), data, progress=False)
    overrides = {
        "home": str(home),
        "security": {
            "rate_limit_per_s": 20.0,
            "rate_limit_burst": BURST,
            "max_body_bytes": MAX_BODY,
        },
    }
    settings = load_settings(**overrides)
    snapshot = build_snapshot(settings, data)
    train_propensity.main(
        train_propensity.Args(
            data=str(data), registry=str(home / "registry"), storage=str(home / "ray_results")
        )
    )
    _register_random_policy(home, data)
    wide_deep = register_wide_deep(ModelRegistry(str(home / "registry")),
                                   data / "warehouse", home)
    keys = key_store(settings)
    tokens = {
        name: keys.create_key(scopes, name=name)[1]
        for name, scopes in {
            "decide": "decide",
            "ingest": "ingest",
            "admin": "admin",
            "burst": "decide",
        }.items()
    }
    revoked_id, revoked = keys.create_key("decide", name="revoked")
    keys.revoke_key(revoked_id)
    tokens["revoked"] = revoked
    app = build_app(
        {
            "registry": str(home / "registry"),
            "features": str(snapshot),
            "products": str(data / "warehouse" / "products"),
            "settings": overrides,
            "audit_flush_interval_s": 0.2,
            "model_refresh_s": 0.5,
            "recommender": "hybrid",
            "deep_recommenders": ["wide_deep"],
        }
    )
    import pandas as pd

    customers = pd.read_parquet(snapshot, columns=["customer_id"])["customer_id"].tolist()
    with serving(app, "ddso-test") as url, httpx.Client(base_url=url, timeout=30) as client:
        yield {"client": client, "customers": customers, "tokens": tokens, "home": home,
               "data": data, "recommender": f"hybrid+{wide_deep}"}


def _register_random_policy(home: Path, data: Path) -> None:
    """An engagement policy champion with random weights: decisions go through the policy."""
    import pandas as pd

    from ddso.models.registry import ModelRegistry
    from rl_env.serving import register_untrained

    products = pd.read_parquet(data / "warehouse" / "products")
    programs = sorted(products.loc[products["program_kind"].notna(), "product_id"])
    register_untrained(ModelRegistry(str(home / "registry")), programs, home)


def auth(served, name: str = "decide") -> dict[str, str]:
    return {"Authorization": f"Bearer {served['tokens'][name]}"}


# --- public endpoints -------------------------------------------------------------------------


def test_healthz_and_readyz_are_public(served):
    client, customers = served["client"], served["customers"]
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["customers"] == len(customers) and body["offers"] > 0
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] and r.json()["missing"] == []
    assert r.json()["propensity"].startswith("propensity:v")
    assert r.json()["recommender"] == served["recommender"]
    assert r.json()["recommender_missing"] == []


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Basic abc"}, "Bearer"),
        ({"Authorization": "Bearer nope"}, "malformed"),
        ({"Authorization": "Bearer ddso_0123456789ab_" + "x" * 43}, "unknown API key"),
    ],
)
def test_401_without_a_valid_key(served, headers, needle):
    r = served["client"].post("/v1/decide", json={"customer_id": "C1"}, headers=headers)
    assert r.status_code == 401 and needle in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_401_for_a_revoked_key_and_before_validation(served):
    client = served["client"]
    r = client.post("/v1/decide", json={"customer_id": "C1"}, headers=auth(served, "revoked"))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert client.post("/v1/decide", json={"colour": "red"}).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("post", "/v1/decide", "ingest"),
        ("post", "/v1/assess", "ingest"),
        ("get", "/v1/customers/C1/profile", "ingest"),
        ("get", "/v1/customers/C1/recommendations", "admin"),
        ("post", "/v1/events", "decide"),
        ("post", "/v1/feedback", "decide"),
        ("get", "/metrics", "decide"),
    ],
)
def test_403_for_a_key_without_the_scope(served, method, path, key):
    r = served["client"].request(method, path, json={}, headers=auth(served, key))
    assert r.status_code == 403 and "lacks scope" in r.json()["detail"]


def test_429_after_the_burst_with_retry_after(served):
    client = served["client"]
    codes = [
        client.get("/v1/customers/C1/profile", headers=auth(served, "burst")).status_code
        for _ in range(BURST * 2)
    ]
    assert codes[0] == 200 and 429 in codes
    r = client.get("/v1/customers/C1/profile", headers=auth(served, "burst"))
    if r.status_code == 429:
        assert int(r.headers["retry-after"]) >= 1 and "rate limit" in r.json()["detail"]
    # Another key's budget is untouched.
    assert client.get("/v1/customers/C1/profile", headers=auth(served)).status_code == 200


def test_413_for_a_large_body(served):
    body = {"customer_id": "C1", "context": {"page": "x" * (MAX_BODY * 2)}}
    r = served["client"].post("/v1/decide", json=body, headers=auth(served))
    assert r.status_code == 413 and r.json()["max_bytes"] == MAX_BODY


def test_413_for_a_large_chunked_body(served):
    def chunks():
        yield b'{"customer_id": "C1", "context": {"page": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}}'

    r = served["client"].post(
        "/v1/decide",
        content=chunks(),
        headers={**auth(served), "content-type": "application/json"},
    )
    assert r.status_code == 413


# --- decide -----------------------------------------------------------------------------------


def test_decide_known_customer(served):
    client, customers = served["client"], served["customers"]
    r = client.post(
        "/v1/decide",
        json={"customer_id": customers[0], "context": {"page": "/cards"}},
        headers=auth(served),
    )
    assert r.status_code == 200
    d = r.json()
    assert d["customer_id"] == customers[0] and not d["cold_start"] and not d["degraded"]
    assert len(d["reasons"]) <= 3 and all(x["text"] for x in d["reasons"])
    assert d["versions"]["propensity_sha256"] and d["versions"]["features"] == "customer:v1"
    assert d["versions"]["policy"] == "engagement_policy:v0001" and d["versions"]["policy_sha256"]
    assert (d["action"]["offer_id"] is None) or (d["action"]["offer_id"] in d["eligible_offers"])
    assert 0.0 < d["propensity"] <= 1.0


def test_unknown_customer_gets_cold_start_and_no_contact(served):
    client = served["client"]
    d = client.post("/v1/decide", json={"customer_id": "NOBODY-123"}, headers=auth(served)).json()
    assert d["cold_start"] and d["action"] == {"channel": None, "offer_id": None}
    assert d["propensity"] == 1.0 and "consent" in d["explanation"]


def test_idempotent_replay_returns_the_same_decision(served):
    client, customers = served["client"], served["customers"]
    headers = {**auth(served), "Idempotency-Key": "retry-1"}
    body = {"customer_id": customers[1]}
    first = client.post("/v1/decide", json=body, headers=headers)
    again = client.post("/v1/decide", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/decide", json={"customer_id": customers[2]}, headers=headers)
    assert other.status_code == 409
    bad = client.post("/v1/decide", json=body, headers={**auth(served), "Idempotency-Key": "a b"})
    assert bad.status_code == 422


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
    r = served["client"].post("/v1/decide", json=body, headers=auth(served))
    assert r.status_code == 422
    assert field in {e["field"].split(".")[-1] for e in r.json()["detail"]}


def test_malformed_json_is_422_not_500(served):
    r = served["client"].post(
        "/v1/decide",
        content=b"{not json",
        headers={**auth(served), "content-type": "application/json"},
    )
    assert r.status_code == 422


def test_audit_record_written_and_replays_bit_identically(served, capsys):
    from ddso.audit import replay
    from ddso.cli import main
    from ddso.models.registry import ModelRegistry

    client, customers, home = served["client"], served["customers"], served["home"]
    ids = []
    for cid in customers[3:8]:
        r = client.post("/v1/decide", json={"customer_id": cid}, headers=auth(served))
        ids.append((cid, r.json()))
    audit = Path(home) / "audit"
    cid, decision = ids[-1]
    record = _wait_for(lambda: _try_find(audit, decision["decision_id"]))
    assert record["channel"] == decision["action"]["channel"]
    assert record["propensity"] == decision["propensity"]
    assert cid not in json.dumps(record, default=str)  # only the pseudonym is stored
    assert len(record["customer_pseudonym"]) == 64
    features = json.loads(record["features"])
    assert set(features) >= {"debt_to_income", "contacts_7d"}

    argv = [
        "audit",
        "replay",
        decision["decision_id"],
        "--audit",
        str(audit),
        "--registry",
        str(home / "registry"),
    ]
    assert main(argv) == 0
    assert "bit-identical" in capsys.readouterr().out

    tampered = dict(record)
    recorded = json.loads(record["decision"])
    recorded["propensity"] = recorded["propensity"] / 2
    tampered["decision"] = json.dumps(recorded)
    problems = replay(tampered, ModelRegistry(str(home / "registry")))
    assert problems and problems[0].startswith("propensity:")
    assert main(["audit", "replay", "no-such-id", "--audit", str(audit)]) == 2


def _try_find(audit: Path, decision_id: str):
    from ddso.audit import find_record
    from ddso.errors import UserError

    try:
        return find_record(audit, decision_id)
    except UserError:
        return None


# --- assessment and customers -----------------------------------------------------------------

PROFILE = FINANCIAL_PROFILE


def test_assess_returns_score_band_reasons_and_programs(served):
    r = served["client"].post(
        "/v1/assess", json={"profile": PROFILE, "age": 40}, headers=auth(served)
    )
    assert r.status_code == 200, r.text
    a = r.json()
    assert 0 <= a["score"] <= 1000 and a["band"] in {"A", "B", "C", "D", "E"}
    assert a["reasons"] and all(x["text"] for x in a["reasons"])
    assert isinstance(a["eligible_programs"], list) and a["model"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"profile": {**PROFILE, "savings_balance": -1}}, "savings_balance"),
        ({"profile": PROFILE, "age": 7}, "age"),
        ({"profile": {**PROFILE, "payments_on_time_12m": 13}}, "profile"),
    ],
)
def test_assess_422_names_the_field(served, body, field):
    r = served["client"].post("/v1/assess", json=body, headers=auth(served))
    assert r.status_code == 422
    assert any(field in e["field"] for e in r.json()["detail"])


def test_profile_of_known_and_unknown_customers(served):
    client, customers = served["client"], served["customers"]
    known = client.get(f"/v1/customers/{customers[0]}/profile", headers=auth(served)).json()
    assert not known["cold_start"] and "debt_to_income" in known["features"]
    unknown = client.get("/v1/customers/NOBODY/profile", headers=auth(served)).json()
    assert unknown["cold_start"]
    bad = client.get("/v1/customers/bad%20id/profile", headers=auth(served))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "customer_id"


def test_recommendations_and_k_bounds(served):
    client, customers = served["client"], served["customers"]
    r = client.get(
        f"/v1/customers/{customers[0]}/recommendations", params={"k": 5}, headers=auth(served)
    )
    assert r.status_code == 200
    assert r.json()["model"] == served["recommender"]  # the hybrid with Wide & Deep in it
    items = r.json()["items"]
    assert 0 < len(items) <= 5
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    for k in (0, 51, "x"):
        bad = client.get(
            f"/v1/customers/{customers[0]}/recommendations", params={"k": k}, headers=auth(served)
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "k"


# --- ingest -----------------------------------------------------------------------------------


def _event_log_size(home: Path) -> int:
    from ddso.io.eventlog import LocalEventLog

    log = LocalEventLog(home / "events", readonly=True)
    try:
        return sum(log.end_offset(p) for p in range(log.partitions))
    finally:
        log.close()


def test_feedback_is_appended_once_per_idempotency_key(served):
    client, home = served["client"], served["home"]
    body = {
        "decision_id": "d-123",
        "customer_id": served["customers"][0],
        "outcome": "accepted",
        "product_id": "P1",
        "channel": "email",
    }
    headers = {**auth(served, "ingest"), "Idempotency-Key": "fb-1"}
    r = client.post("/v1/feedback", json=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"event_id": "fb-d-123-accepted", "accepted": True}
    size = _event_log_size(Path(home))
    again = client.post("/v1/feedback", json=body, headers=headers)
    assert again.json() == r.json() and again.headers["idempotent-replayed"] == "true"
    assert _event_log_size(Path(home)) == size
    bad = client.post("/v1/feedback", json={**body, "outcome": "maybe"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "outcome"


def test_events_batch_keeps_the_good_and_reports_the_bad(served):
    client, home = served["client"], served["home"]
    good = {
        "type": "view",
        "event_id": "e-view-1",
        "customer_id": "C1",
        "event_time": "2025-06-30T10:00:00Z",
        "source": "web",
        "session_id": "s1",
        "product_id": "P1",
        "price": 10.0,
    }
    bad = {**good, "event_id": "e-view-2", "price": -5}
    unknown = {**good, "event_id": "e-3", "type": "teleport"}
    r = client.post(
        "/v1/events", json={"events": [good, bad, unknown]}, headers=auth(served, "ingest")
    )
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 2
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert "price" in body["errors"][0]["detail"] and body["errors"][1]["reason"] == "unknown_type"
    assert _event_log_size(Path(home)) >= 1
    empty = client.post("/v1/events", json={"events": []}, headers=auth(served, "ingest"))
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "events"


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_exposes_requests_and_decisions(served):
    client = served["client"]
    client.post("/v1/decide", json={"customer_id": "NOBODY-9"}, headers=auth(served))
    r = client.get("/metrics", headers=auth(served, "admin"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'ddso_decisions_total{arm="none",channel="none",explored="no",offer="no"}' in text
    assert 'endpoint="/v1/decide"' in text and "ddso_http_request_seconds_bucket" in text
    assert "NOBODY" not in text


# --- hot reload (last: it changes the champion) ------------------------------------------------


def test_a_promoted_policy_is_served_under_http_load_without_a_failed_request(served):
    """Clients keep deciding over HTTP while the registry promotes a new engagement policy:
    every request is answered 200, and the replicas switch to the new champion."""
    import threading

    import pandas as pd

    from ddso.models.registry import ModelRegistry
    from rl_env.serving import register_untrained

    home, client, customers = Path(served["home"]), served["client"], served["customers"]
    products = pd.read_parquet(Path(served["data"]) / "warehouse" / "products")
    programs = sorted(products.loc[products["program_kind"].notna(), "product_id"])
    registry = ModelRegistry(str(home / "registry"))
    (home / "policy-v2").mkdir()
    new = register_untrained(registry, programs, home / "policy-v2", seed=1)
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def traffic(offset: int) -> None:
        # ~12 requests/s in all: under the key's rate limit (20/s), so every answer counts
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            i = offset
            while not stop.is_set():
                try:
                    r = own.post("/v1/decide", json={"customer_id": customers[i % 50]},
                                 headers=auth(served))
                    policy = r.json()["versions"]["policy"] if r.status_code == 200 else None
                    answers.append((r.status_code, policy))
                except httpx.HTTPError as e:
                    answers.append((0, repr(e)))
                i += 3
                time.sleep(0.25)

    threads = [threading.Thread(target=traffic, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: len(answers) >= 6)
        registry.promote("engagement_policy", new.version)
        _wait_for(lambda: any(p == f"engagement_policy:{new.version}" for _, p in answers[-3:]),
                  timeout_s=20)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert [a for a in answers if a[0] != 200] == []
    policies = [p for _, p in answers]
    switched = policies.index(f"engagement_policy:{new.version}")
    assert set(policies[:switched]) == {"engagement_policy:v0001"}
    assert set(policies[-4:]) == {f"engagement_policy:{new.version}"}
    assert len(policies) - switched >= 6  # it kept answering on the new one
