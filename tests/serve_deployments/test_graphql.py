"""``/graphql`` beside REST, over real HTTP on the Serve app: the same answers as the REST
routes, the same auth, rate limit and audit, and the query limits answering 422 naming the
rule. The schema's agreement with the response models and the cost of introspection are
checked without Serve.

The app serves a small generated dataset with a plain XGBoost propensity model
(:mod:`tests.serve_deployments.inprocess`), so the module needs no training job.
"""

import time

import httpx
import pytest
from graphql import get_introspection_query, parse

from serve_deployments import graphql as gql
from serve_deployments.schemas import AssessResponse, DecideResponse, ProfileResponse
from tests.serve_deployments.inprocess import FINANCIAL_PROFILE

BURST = 200
METERED_CALLS = 10

PROFILE = {k: v for k, v in FINANCIAL_PROFILE.items() if k != "customer_id"}
CUSTOMER_QUERY = """
query Customer($id: ID!, $k: Int, $profile: JSON!) {
  customer(id: $id) {
    profile { customer_id features segment cold_start }
    segment
    recommendations(k: $k) { customer_id model items { product_id score } }
    assessment(profile: $profile, age: 40) {
      customer_id score band reasons { feature text contribution }
      eligible_programs graduation_likelihood model
    }
  }
}
"""
DECISION_QUERY = """
query Decide($id: ID!) {
  customer(id: $id) {
    decision(context: {page: "/cards"}) {
      decision_id customer_id action propensity explored cold_start versions
    }
  }
}
"""


@pytest.fixture(scope="module")
def served(serving, tmp_path_factory):
    from ddso.config import load_settings
    from ddso.data.generator import GeneratorConfig, generate
    from ddso.models.registry import ModelRegistry
    from serve_deployments.app import build_app
    from serve_deployments.security import key_store
    from tests.serve_deployments.inprocess import register_propensity, snapshot

    home = tmp_path_factory.mktemp("graphql-home")
    data = home / "data"
    generate(GeneratorConfig(customers=200, days=30, seed=7), data, progress=False)
    customers = snapshot(data, home / "features.parquet")
    register_propensity(ModelRegistry(str(home / "registry")), home)
    overrides = {"home": str(home),
                 "security": {"rate_limit_per_s": 1.0, "rate_limit_burst": BURST}}
    keys = key_store(load_settings(**overrides))
    tokens = {name: keys.create_key(scope, name=name)[1]
              for name, scope in (("decide", "decide"), ("metered", "decide"),
                                  ("ingest", "ingest"), ("admin", "admin"))}
    app = build_app({
        "registry": str(home / "registry"),
        "features": str(home / "features.parquet"),
        "products": str(data / "warehouse" / "products"),
        "settings": overrides,
        "audit_flush_interval_s": 0.2,
    })
    with serving(app, "ddso-graphql") as url, httpx.Client(base_url=url, timeout=30) as client:
        yield {"client": client, "customers": customers, "tokens": tokens, "home": home}


def auth(served, name: str = "decide") -> dict[str, str]:
    return {"Authorization": f"Bearer {served['tokens'][name]}"}


def post(served, query: str, variables: dict | None = None, key: str = "decide"
         ) -> httpx.Response:
    return served["client"].post("/graphql", json={"query": query, "variables": variables},
                                 headers=auth(served, key))


# --- the same answers as REST ----------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.parametrize("which", ["known", "unknown"])
def test_answers_equal_the_rest_endpoints(served, which):
    client = served["client"]
    cid = served["customers"][0] if which == "known" else "NOBODY-42"
    r = post(served, CUSTOMER_QUERY, {"id": cid, "k": 5, "profile": PROFILE})
    assert r.status_code == 200, r.text
    got = r.json()["data"]["customer"]
    rest = {
        "profile": client.get(f"/v1/customers/{cid}/profile", headers=auth(served)).json(),
        "recommendations": client.get(f"/v1/customers/{cid}/recommendations",
                                      params={"k": 5}, headers=auth(served)).json(),
        "assessment": client.post("/v1/assess", headers=auth(served), json={
            "profile": {**PROFILE, "customer_id": cid}, "age": 40}).json(),
    }
    assert got["profile"] == rest["profile"]
    assert got["segment"] == rest["profile"]["segment"]
    assert got["recommendations"] == rest["recommendations"]
    assert got["assessment"] == rest["assessment"]
    assert got["profile"]["cold_start"] == (which == "unknown")
    assert len(got["recommendations"]["items"]) == 5


@pytest.mark.ray
@pytest.mark.integration
def test_bad_arguments_are_422_naming_the_field_like_rest(served):
    rest = served["client"].get("/v1/customers/bad%20id/profile", headers=auth(served))
    assert rest.status_code == 422 and rest.json()["detail"][0]["field"] == "customer_id"
    cases = [
        ('{ customer(id: "bad id") { segment } }', "id"),
        ('{ customer(id: "C1") { recommendations(k: 51) { model } } }', "k"),
        ('{ customer(id: "C1") { decision(context: {page: "%s"}) { decision_id } } }'
         % ("x" * 201), "context.page"),
        ('{ customer(id: "C1") { assessment(profile: {savings_balance: -1}) { score } } }',
         "profile.savings_balance"),
    ]
    for query, field in cases:
        r = post(served, query)
        assert r.status_code == 422, (query, r.text)
        error = r.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert field in {f["field"] for f in error["extensions"]["fields"]}, error
        assert "bad id" not in r.text


# --- decisions --------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.integration
def test_a_decision_is_audited_like_one_by_rest(served):
    from ddso.audit import find_record
    from ddso.errors import UserError

    cid = served["customers"][1]
    r = post(served, DECISION_QUERY, {"id": cid})
    assert r.status_code == 200, r.text
    decision = r.json()["data"]["customer"]["decision"]
    assert decision["customer_id"] == cid and not decision["cold_start"]
    assert decision["versions"]["features"] == "customer:v1"

    def record():
        try:
            return find_record(served["home"] / "audit", decision["decision_id"])
        except UserError:
            return None

    deadline = time.monotonic() + 10
    while (found := record()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found is not None, "the GraphQL decision was not audited"
    assert found["channel"] == decision["action"]["channel"]
    assert found["propensity"] == decision["propensity"]
    assert cid not in str(found)  # only the pseudonym is stored


@pytest.mark.ray
@pytest.mark.integration
def test_get_answers_queries_but_never_decides(served):
    client = served["client"]
    cid = served["customers"][2]
    r = client.get("/graphql", headers=auth(served), params={
        "query": "query($id: ID!) { customer(id: $id) { segment } }",
        "variables": f'{{"id": "{cid}"}}'})
    assert r.status_code == 200 and r.json() == {"data": {"customer": {"segment": None}}}
    r = client.get("/graphql", headers=auth(served),
                   params={"query": DECISION_QUERY, "variables": f'{{"id": "{cid}"}}'})
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert "POST" in r.json()["errors"][0]["message"]
    r = client.get("/graphql", headers=auth(served), params={"query": "{ x }", "variables": "{"})
    assert r.status_code == 422 and "variables is not JSON" in r.json()["errors"][0]["message"]


# --- auth and rate limits --------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer ddso_0123456789ab_" + "x" * 43}, 401),
    ("ingest", 403),
])
def test_the_rest_auth_applies(served, headers, status):
    if isinstance(headers, str):
        headers = auth(served, headers)
    query = '{ customer(id: "C1") { segment } }'
    r = served["client"].post("/graphql", json={"query": query}, headers=headers)
    assert r.status_code == status and r.json()["detail"]
    assert served["client"].get("/graphql", params={"query": query},
                                headers=headers).status_code == status


@pytest.mark.ray
@pytest.mark.integration
def test_a_query_takes_a_rate_limit_token_per_service_call(served):
    fields = " ".join(f"r{i}: recommendations(k: 1) {{ model }}" for i in range(METERED_CALLS))
    query = f'{{ customer(id: "C1") {{ {fields} }} }}'
    codes = [post(served, query, key="metered").status_code
             for _ in range(BURST // METERED_CALLS + 5)]
    # Charged one token a query, 200 of them would pass; charged ten, about 20 do.
    assert codes[0] == 200 and codes.index(429) <= BURST // METERED_CALLS + 2, codes


# --- limits and malformed queries ------------------------------------------------------------


def _nested_of_type(levels: int) -> str:
    inner = "name"
    for _ in range(levels):
        inner = f"ofType {{ {inner} }}"
    return f'{{ __type(name: "Customer") {{ fields {{ type {{ {inner} }} }} }} }}'


def _on_customer(*selections: str) -> str:
    return '{ customer(id: "C1") { ' + " ".join(selections) + " } }"


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.parametrize(("query", "code", "message"), [
    (_nested_of_type(13), "MAX_DEPTH", "query depth 16 exceeds the limit 15"),
    (_on_customer("recommendations(k: 300) { model }"), "MAX_COST",
     "query cost 301 exceeds the limit 250"),
    (_on_customer(*(f"r{i}: recommendations(k: 50) {{ model }}" for i in range(5))),
     "MAX_COST", "query cost 255 exceeds the limit 250"),
    (_on_customer(*(f"a{i}: id" for i in range(11))),
     "MAX_ALIASES", "number of aliases 11 exceeds the limit 10"),
    ("{ " + " ".join(f'c{i}: customer(id: "C{i}") {{ id }}' for i in range(6)) + " }",
     "MAX_ROOT_FIELDS", "number of root fields 6 exceeds the limit 5"),
    (_on_customer("id " * 30), "MAX_DUPLICATES",
     "number of repeated selections 21 exceeds the limit 20"),
    (_on_customer("...F0") + "".join(f" fragment F{i} on Customer {{ ...F{i + 1} ...F{i + 1} }}"
                                     for i in range(5)) + " fragment F5 on Customer { id }",
     "MAX_DUPLICATES", "number of repeated selections 21 exceeds the limit 20"),
    (_on_customer("id") + " fragment Unused on Customer { id }", "UNUSED_DEFINITIONS",
     "not used: Unused"),
    (_on_customer("id") + " " * 8_000, "MAX_QUERY_SIZE", "exceeds the limit 8000"),
    (_on_customer("id " * 2_000), "MAX_TOKENS", "query tokens exceed the limit 2000"),
])
def test_a_query_over_a_limit_is_422_naming_the_rule(served, query, code, message):
    r = post(served, query)
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["extensions"]["code"] == code and message in error["message"], error
    assert "data" not in r.json()


@pytest.mark.ray
@pytest.mark.integration
def test_a_body_over_the_size_limit_is_413(served):
    r = post(served, "{ customer(id: \"C1\") { id } }" + " " * (64 * 1024))
    assert r.status_code == 413 and r.json()["max_bytes"] == 64 * 1024


@pytest.mark.ray
@pytest.mark.integration
@pytest.mark.parametrize(("body", "code", "message"), [
    ({"query": '{ customer(id: "C-SECRET-1" '}, "GRAPHQL_PARSE_FAILED", "Syntax Error"),
    ({"query": '{ customer(id: "C-SECRET-1") { nope } }'}, "GRAPHQL_VALIDATION_FAILED",
     "Cannot query field 'nope' on type 'Customer'"),
    ({"query": '{ customer(id: "C-SECRET-1") { recommendations(k: "C-SECRET-1") { model } } }'},
     "GRAPHQL_VALIDATION_FAILED", "Int cannot represent non-integer value"),
    ({"query": "query($id: ID!) { customer(id: $id) { id } }",
      "variables": {"id": {"C-SECRET-1": 1}}}, "BAD_USER_INPUT", "variable $id"),
    ({"query": "mutation { customer(id: 1) { id } }"}, "GRAPHQL_VALIDATION_FAILED",
     "mutation is not supported"),
    ({"query": "query A { __typename } query B { __typename }"}, "BAD_REQUEST",
     "operationName"),
])
def test_a_malformed_query_is_422_with_a_clear_message_and_no_echo(served, body, code, message):
    r = served["client"].post("/graphql", json=body, headers=auth(served))
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["extensions"]["code"] == code and message in error["message"], error
    assert "C-SECRET-1" not in r.text


@pytest.mark.ray
@pytest.mark.integration
def test_a_malformed_body_is_422_naming_the_field(served):
    r = served["client"].post("/graphql", json={"variables": {}}, headers=auth(served))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "query"


@pytest.mark.ray
@pytest.mark.integration
def test_metrics_count_graphql_requests(served):
    post(served, '{ customer(id: "C1") { id } }')
    text = served["client"].get("/metrics", headers=auth(served, "admin")).text
    assert 'endpoint="/graphql",method="POST",status="200"' in text
    assert 'endpoint="/graphql",method="POST",status="422"' in text


# --- the schema, without Serve ----------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(("name", "model"), [
    ("CustomerProfile", ProfileResponse), ("Decision", DecideResponse),
    ("Assessment", AssessResponse),
])
def test_object_types_have_the_response_models_fields(name, model):
    assert set(gql.SCHEMA.get_type(name).fields) == set(model.model_fields)


@pytest.mark.unit
def test_standard_introspection_fits_the_limits():
    document = parse(get_introspection_query())
    a = gql.analyse(document, document.definitions[0], {})
    assert a.depth == gql.LIMITS.max_depth and a.cost <= gql.LIMITS.max_cost
    assert a.tokens == 1
