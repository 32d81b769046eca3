"""The closed loop, end to end: decide -> simulated customers respond -> outcome events through
Kafka -> the stream job -> the feedback job labels them -> a retrain is judged and promoted ->
the serving replica picks it up -> the next period converts better.

Customers are the generator's (features served from the dataset's snapshot) and respond with
the journey environment's own dynamics (:class:`rl_env.respond.ServedResponder`). Period 1 is
served by the rule policy (propensity x value) with epsilon-greedy exploration; period 2 by
whatever the gate let through, with the same exploration. Conversion = enrolments per
decision; both periods' figures are printed. The issue's target (the promoted policy converts
at least 25 % better) is not asserted: at this budget a single contact converts ~0.4 %, too
few outcomes (~25) for the gate to find a surely better policy (README, the feedback loop).
"""

import asyncio
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from ddso.config import load_settings
from ddso.io.kafka import ensure_topics
from ddso.models.registry import ModelRegistry
from ddso.policy.decide import RULE_POLICY
from ddso.policy.labelling import LabelStore
from ddso.stores.offline import OfflineStore
from pipelines import retrain
from pipelines.stream import Args as StreamArgs
from pipelines.stream import run_consumer
from rl_env.customers import synthetic_pool
from rl_env.respond import ServedResponder
from serve_deployments.schemas import DecideRequest, EventsRequest
from tests.serve_deployments.inprocess import register_propensity, snapshot

pytestmark = pytest.mark.integration

CUSTOMERS, DAYS, SEED = 1500, 30, 4
ROUNDS = 4  # decisions per customer and period
EPSILON = 0.2


def _period(service, responder, customers, tag):
    decisions = enrolled = 0
    for r in range(ROUNDS):
        bodies = [service.decide(DecideRequest(customer_id=c)) for c in customers]
        won = responder.respond(customers, [b["action"]["channel"] for b in bodies],
                                [b["action"]["offer_id"] for b in bodies])
        now = datetime.now(UTC).isoformat()
        events = [{"type": "enrollment", "event_id": f"{tag}-{r}-{b['decision_id']}",
                   "customer_id": b["customer_id"], "event_time": now, "source": "crm",
                   "enrollment_id": f"n-{b['decision_id']}",
                   "product_id": b["action"]["offer_id"], "monthly_payment": 50.0,
                   "decision_id": b["decision_id"]}
                  for b, w in zip(bodies, won, strict=True) if w]
        for lo in range(0, len(events), 500):
            answer = asyncio.run(service.ingest(EventsRequest(events=events[lo:lo + 500])))
            assert answer.rejected == 0, answer.errors
        decisions += len(bodies)
        enrolled += int(won.sum())
    service.audit.flush()
    return decisions, enrolled


def test_outcomes_flow_back_through_kafka_into_labels_and_a_gated_retrain(
    tmp_path, kafka_bootstrap, monkeypatch
):
    from ddso.data.generator import GeneratorConfig, generate
    from serve_deployments.service import AssessmentClient, AssessmentModel, DecisionService

    topic = f"loop.{uuid.uuid4().hex[:6]}"
    for key, value in {"HOME": str(tmp_path), "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
                       "KAFKA__EVENTS_TOPIC": topic, "KAFKA__GROUP_ID": f"g-{topic}",
                       "KAFKA__DECISIONS_TOPIC": f"{topic}.decisions"}.items():
        monkeypatch.setenv(f"DDSO_{key}", value)
    settings = load_settings()
    ensure_topics(settings.kafka, {topic: 2})
    data = tmp_path / "data"
    generate(GeneratorConfig(customers=CUSTOMERS, days=DAYS, seed=SEED), data, progress=False)
    customers = snapshot(data, tmp_path / "features.parquet")
    registry = ModelRegistry(tmp_path / "registry")
    register_propensity(registry, tmp_path)
    args = {"registry": str(tmp_path / "registry"), "features": str(tmp_path / "features.parquet"),
            "products": str(data / "warehouse" / "products"), "epsilon": EPSILON,
            "model_refresh_s": 0, "audit_flush_records": 100_000, "audit_flush_interval_s": 600}
    service = DecisionService(args, AssessmentClient.local(
        AssessmentModel(args["registry"], args["products"])))
    pool = synthetic_pool(CUSTOMERS, SEED, DAYS)
    assert set(customers) <= set(pool.customer_ids)  # the simulator's customers are the data's
    responder = ServedResponder(pool, seed=1)
    try:
        n1, k1 = _period(service, responder, customers, "p1")
        # the outcome events go through Kafka into the stream job and the offline store
        totals = run_consumer(settings, StreamArgs(idle_exit_s=3, poll_s=0.2))
        assert totals["applied"] == k1
        store = OfflineStore(settings.offline_store_path())
        assert store.read(["event_id"], types=["enrollment"]).num_rows == k1
        # labels, then the retrain judged on the rule's newest 30 % of decisions
        report = retrain.main(retrain.Args(registry=args["registry"], holdout_days=0,
                                           min_holdout=int(0.3 * n1)))["policy"]
        labels = LabelStore(tmp_path / "feedback").read("labels", ["enrolled"])
        assert len(labels) == n1 and int(labels["enrolled"].sum()) == k1
        assert report["champion"] == RULE_POLICY and report["holdout_decisions"] == int(0.3 * n1)
        registry_stage = registry.stage("engagement_policy", report["candidate"].split(":")[1])
        if report["promoted"]:
            assert report["challenger_ci_low"] > report["champion_value"]
            assert registry_stage == "champion"
            assert service.refresh_models() == [report["candidate"]]
        else:  # refused with both numbers; serving keeps the rule
            assert "champion stays" in report["refused"] and registry_stage == "candidate"
            assert service.refresh_models() == []
        n2, k2 = _period(service, responder, customers, "p2")
        served = service.policy.version if service.policy else RULE_POLICY
    finally:
        service.close()
    c1, c2 = k1 / n1, k2 / n2
    print(f"\nclosed loop: period 1 (rule policy) {k1}/{n1} = {c1:.4f}; retrain: "
          f"{pd.Series(report).to_dict()}; period 2 ({served}) {k2}/{n2} = {c2:.4f}")
