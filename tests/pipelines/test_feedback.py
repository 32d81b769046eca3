"""The feedback job on the embedded default: local log + audit files -> labels, restartable."""

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddso.audit import SCHEMA
from ddso.config import load_settings
from ddso.io.eventlog import LocalEventLog
from ddso.pii import pseudonymise
from ddso.policy.labelling import LabelStore
from ddso.schemas.events import encode_event, parse_event_obj
from ddso.stores.offline import OfflineStore, events_table
from pipelines.feedback import Args, main

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def write_audit(directory, settings, rows):
    directory.mkdir(parents=True, exist_ok=True)
    records = [{
        "decision_id": d, "decided_at": (T0 + timedelta(days=day)).timestamp(),
        "customer_pseudonym": pseudonymise(c, settings.pii_key_bytes(), kind="customer"),
        "cold_start": False, "request": "{}", "features": '{"x":1.0}', "facts": "{}",
        "offers": "[]", "channel": ch, "offer_id": "P1" if ch else None, "propensity": 0.5,
        "explored": False, "decision": "{}",
    } for d, c, day, ch in rows]
    pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA),
                   directory / f"audit-{rows[0][0]}.parquet")


def enrollment(event_id, customer, day, decision_id=None):
    return parse_event_obj({
        "type": "enrollment", "event_id": event_id, "customer_id": customer,
        "event_time": T0 + timedelta(days=day), "source": "crm", "enrollment_id": event_id,
        "product_id": "P1", "monthly_payment": 40.0, "decision_id": decision_id})


def view(event_id, customer, day):
    return parse_event_obj({
        "type": "view", "event_id": event_id, "customer_id": customer,
        "event_time": T0 + timedelta(days=day), "source": "web", "session_id": "s",
        "product_id": "P9", "price": 3.0})


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSO_HOME", str(tmp_path))


def test_stream_labels_follow_outcomes_and_survive_a_restart(tmp_path):
    settings = load_settings(home=tmp_path)
    audit = tmp_path / "audit"
    write_audit(audit, settings, [("d1", "C1", 0, "email"), ("d2", "C2", 0, "sms"),
                                  ("d3", "C1", 5, None)])
    log = LocalEventLog(settings.event_log_path(), partitions=2)
    events = [view("v1", "C1", 1), enrollment("e1", "C1", 6), enrollment("e2", "C2", 2, "d2")]
    log.append([(e.customer_id.encode(), encode_event(e)) for e in events])
    args = Args(idle_exit_s=0.5, poll_s=0.1)
    totals = main(args)
    assert totals["outcomes"] == 2  # the view is no outcome
    labels = LabelStore(tmp_path / "feedback").read().set_index("decision_id")
    assert labels.loc["d1", "enrolled"] == 1  # last touch: d3 made no contact
    assert labels.loc["d2", "enrolled"] == 1 and labels.loc["d3", "enrolled"] == 0
    assert "C1" not in labels["customer_pseudonym"].tolist()

    # a restart reads nothing twice; a later decision and a late outcome move the credit
    write_audit(audit, settings, [("d4", "C1", 5.5, "call")])
    log.append([(b"C1", encode_event(enrollment("e3", "C1", 7)))])
    totals = main(args)
    assert totals["outcomes"] == 3
    labels = LabelStore(tmp_path / "feedback").read().set_index("decision_id")
    assert labels.loc["d1", "enrolled"] == 0 and labels.loc["d4", "enrolled"] == 1
    assert labels.loc["d4", "outcomes"] == 2
    log.close()


def test_offline_pass_gives_the_labels_of_the_stream(tmp_path):
    settings = load_settings(home=tmp_path)
    write_audit(tmp_path / "audit", settings, [("d1", "C1", 0, "email"), ("d2", "C2", 0, "sms")])
    events = [enrollment("e1", "C1", 3), enrollment("e2", "C2", 2, "d2"), view("v", "C2", 1)]
    OfflineStore(settings.offline_store_path()).write_batch(
        events_table(events, range(3), "ddso.events-0", T0), "ddso.events-0", 0, 2)
    main(Args(source="offline", out=str(tmp_path / "offline-labels")))
    offline = LabelStore(tmp_path / "offline-labels").read().set_index("decision_id")
    log = LocalEventLog(settings.event_log_path(), partitions=1)
    log.append([(e.customer_id.encode(), encode_event(e)) for e in events])
    log.close()
    main(Args(idle_exit_s=0.5, poll_s=0.1))
    stream = LabelStore(tmp_path / "feedback").read().set_index("decision_id")
    cols = ["enrolled", "outcomes", "reward"]
    assert offline.sort_index()[cols].equals(stream.sort_index()[cols])
    assert offline.loc["d1", "enrolled"] == 1


def test_bad_arguments_name_the_flag(tmp_path):
    from ddso.errors import UserError

    with pytest.raises(UserError, match="--window-days"):
        main(Args(config=None, window_days=0, source="offline", out=str(tmp_path)))
    with pytest.raises(UserError, match="--source"):
        main(Args(source="kafka"))


def test_the_champion_bandit_learns_each_label_and_is_published_through_the_gate(tmp_path):
    from ddso.models.registry import ModelRegistry
    from ddso.policy.bandit import LinearBandit, action_key
    from pipelines.feedback import BanditUpdates
    from tests.ddso.policy.logged_world import logged

    registry = ModelRegistry(tmp_path / "registry")
    seed_log = logged(60, seed=30)
    bandit = LinearBandit(["x", "noise"])
    bandit.learn(bandit.contexts([json.loads(f) for f in seed_log["features"]]),
                 [action_key(c, o) for c, o in zip(seed_log["channel"], seed_log["offer_id"],
                                                   strict=True)],
                 seed_log["reward"].to_numpy())
    registry.register("engagement_policy", {"bandit.json": bandit.save(tmp_path / "b.json")},
                      {"kind": "linear_bandit", "metrics": {}})
    updates = BanditUpdates(registry, every_s=0)
    updates.take(logged(3000, seed=31, policy="engagement_policy:v0001"))
    published = updates.maybe_publish()
    assert published is not None and published["version"] == "v0002"
    assert published["challenger_ci_low"] > published["champion_value"]
    assert published["ope_verdict"] == "better" and published["holdout_decisions"] == 3000
    champion = registry.champion("engagement_policy")
    assert champion.version == "v0002" and champion.metadata["parent"] == "engagement_policy:v0001"
    assert registry.history("engagement_policy")[-1]["metric"] == "ope_value"
    assert updates.maybe_publish() is None  # nothing judged since: kept back
    # a window where the update is no better than the champion is kept back, unregistered
    updates.take(logged(400, seed=32, policy="engagement_policy:v0002", p2_good=False))
    assert updates.maybe_publish() is None
    assert registry.versions("engagement_policy") == ["v0001", "v0002"]
