"""Experiments on the decision path, in process (no Ray): each customer's arm decides with its
own policy, the arm is answered and audited, a stopped arm's customers go to control, and a
decision of a challenger policy version replays bit for bit."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddso.audit import SCHEMA, find_record, replay
from ddso.experiments import assign, record_stops
from ddso.models.registry import ModelRegistry
from ddso.pii import pseudonymise
from ddso.policy.decide import RULE_POLICY
from serve_deployments.schemas import DecideRequest
from tests.serve_deployments.inprocess import register_propensity, snapshot

pytestmark = pytest.mark.unit

EXPERIMENT = {
    "control": "champion",
    "arms": [
        {"name": "champion", "share": 0.4},
        {"name": "challenger", "share": 0.4, "policy_version": "v0002"},
        {"name": "rules", "share": 0.2, "policy_version": "rules"},
    ],
    "guardrails": [{"metric": "churned", "max_degradation": 0.01}],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ddso.data.generator import GeneratorConfig, generate
    from rl_env.serving import register_untrained
    from serve_deployments.service import AssessmentClient, AssessmentModel, DecisionService

    home = tmp_path_factory.mktemp("experiments-home")
    data = home / "data"
    generate(GeneratorConfig(customers=300, days=30, seed=5), data, progress=False)
    customers = snapshot(data, home / "features.parquet")
    registry = ModelRegistry(str(home / "registry"))
    register_propensity(registry, home)
    products = pd.read_parquet(data / "warehouse" / "products")
    programs = sorted(products.loc[products["program_kind"].notna(), "product_id"])
    for seed in (0, 1):  # v0001, the champion, and v0002, the challenger
        (home / f"policy{seed}").mkdir()
        register_untrained(registry, programs, home / f"policy{seed}", seed=seed)
    args = {
        "registry": str(home / "registry"),
        "features": str(home / "features.parquet"),
        "products": str(data / "warehouse" / "products"),
        "settings": {"home": str(home), "experiments": {"policy-ab": EXPERIMENT}},
        "audit_flush_records": 10_000,
        "audit_flush_interval_s": 600,
    }
    service = DecisionService(args, AssessmentClient.local(
        AssessmentModel(args["registry"], args["products"])))
    yield {"service": service, "customers": customers, "home": home, "registry": registry}
    service.close()


def test_each_arm_decides_with_its_policy_and_is_answered_and_audited(world):
    service, home = world["service"], world["home"]
    experiment = service.router.experiment
    answers = {}
    for cid in world["customers"]:
        body = service.decide(DecideRequest(customer_id=cid))
        arm = assign(experiment, pseudonymise(cid, service.pii_key, kind="customer")).name
        versions = body["versions"]
        assert versions["experiment"] == "policy-ab" and versions["arm"] == arm
        expected = {"champion": "engagement_policy:v0001",
                    "challenger": "engagement_policy:v0002", "rules": RULE_POLICY}[arm]
        assert versions["policy"] == expected
        assert ("policy_sha256" in versions) == (arm != "rules")
        answers[body["decision_id"]] = arm
    assert set(answers.values()) == {"champion", "challenger", "rules"}
    exposition = service.metrics.exposition().body.decode()
    assert 'arm="challenger"' in exposition and 'arm="rules"' in exposition
    service.audit.flush()
    registry = world["registry"]
    for arm in ("challenger", "rules", "champion"):
        decision_id = next(d for d, a in answers.items() if a == arm)
        record = find_record(home / "audit", decision_id)
        assert record["experiment"] == "policy-ab" and record["arm"] == arm
        assert replay(record, registry) == []  # the recorded policy version, bit for bit


def test_a_stopped_arm_sends_its_customers_to_control(world):
    service, home = world["service"], world["home"]
    record_stops(home, "policy-ab", {"challenger": "guardrail churned (a test)"})
    service.router.refresh_s = 0.0  # serving re-reads the state every few seconds
    arms = {service.decide(DecideRequest(customer_id=cid))["versions"]["arm"]
            for cid in world["customers"]}
    assert arms == {"champion", "rules"}


def test_audit_files_written_before_experiments_still_read_and_replay(world, tmp_path):
    service, home = world["service"], world["home"]
    body = service.decide(DecideRequest(customer_id=world["customers"][0]))
    service.audit.flush()
    record = find_record(home / "audit", body["decision_id"])
    old = pa.schema([f for f in SCHEMA if f.name not in ("experiment", "arm")])
    versions = {k: v for k, v in body["versions"].items() if k not in ("experiment", "arm")}
    decision = {**json.loads(record["decision"]), "versions": versions}
    row = {**{f.name: record[f.name] for f in old}, "decision": json.dumps(decision)}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "audit-1-old.parquet")
    found = find_record(tmp_path, body["decision_id"])
    assert found["experiment"] is None and found["arm"] is None
    assert replay(found, world["registry"]) == []


def test_an_arm_names_a_policy_version_the_registry_must_have(world):
    from ddso.errors import UserError
    from rl_env.serving import load_policy

    registry = world["registry"]
    assert load_policy(registry, "engagement_policy:v0002").version == "engagement_policy:v0002"
    assert load_policy(registry).version == "engagement_policy:v0001"
    with pytest.raises(UserError, match="no version 'v0009'.*known: v0001, v0002"):
        load_policy(registry, "v0009")
    with pytest.raises(UserError, match="'propensity:v0001' is not a version of engagement"):
        load_policy(registry, "propensity:v0001")


def test_a_promoted_policy_is_picked_up_while_decisions_flow(world):
    """Hot reload (last in this module: it changes the champion): decisions keep being
    answered from threads while the registry promotes v0002 and the refresh loop swaps it."""
    import threading
    import time

    service, registry = world["service"], world["registry"]
    record_stops(world["home"], "policy-ab", {})
    customers = world["customers"]
    failures, answered, stop = [], [], threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            try:
                answered.append(service.decide(DecideRequest(
                    customer_id=customers[i % len(customers)]))["versions"])
            except Exception as e:  # noqa: BLE001 - every failure is the test's finding
                failures.append(repr(e))
            i += 1

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    for t in threads:
        t.start()
    loop = threading.Thread(target=service._refresh_loop, args=(0.05,), daemon=True)
    loop.start()
    time.sleep(0.3)
    before = len(answered)
    registry.promote("engagement_policy", "v0002")
    deadline = time.monotonic() + 10
    while service.policy.version != "engagement_policy:v0002" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    service._stop_refresh.set()
    assert failures == [] and before > 0
    assert service.policy.version == "engagement_policy:v0002"
    champion_arm = [v["policy"] for v in answered[-50:] if v.get("arm") == "champion"]
    assert champion_arm and set(champion_arm) == {"engagement_policy:v0002"}
    assert service.refresh_models() == []  # nothing new since
