"""The retraining job: a bandit from logged decisions, promoted only through the OPE gate."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddso.audit import SCHEMA
from ddso.errors import UserError
from ddso.models.registry import ModelRegistry
from ddso.policy.decide import POLICY_MODEL, RULE_POLICY
from ddso.policy.labelling import LabelStore
from pipelines.retrain import Args, main
from rl_env.serving import load_policy
from tests.ddso.policy.logged_world import logged

pytestmark = pytest.mark.integration

DAY = 86_400.0


def write(tmp_path, frame: pd.DataFrame) -> Args:
    audit = tmp_path / "audit"
    audit.mkdir(exist_ok=True)
    rows = frame.assign(cold_start=False, request="{}", facts="{}", offers="[]", explored=False)
    table = pa.Table.from_pandas(rows[[c for c in SCHEMA.names if c in rows.columns]],
                                 preserve_index=False)
    pq.write_table(table.cast(pa.schema([SCHEMA.field(n) for n in table.column_names])),
                   audit / f"audit-{len(list(audit.iterdir()))}.parquet")
    labels = frame[["decision_id", "reward"]].assign(customer_pseudonym=frame["customer_pseudonym"])
    LabelStore(tmp_path / "feedback").write(labels, pd.DataFrame({"event_id": []}))
    return Args(registry=str(tmp_path / "registry"), audit=str(audit),
                labels=str(tmp_path / "feedback"), relabel=False, holdout_days=2,
                min_holdout=500)


def test_a_better_bandit_is_promoted_over_the_rule_and_served(tmp_path):
    # 8,000 decisions one minute apart (5.6 days): the last two days are the holdout
    args = write(tmp_path, logged(8000, seed=11))
    report = main(args)["policy"]
    assert report["champion"] == RULE_POLICY and report["promoted"] is True, report
    assert report["challenger_value"] > report["champion_value"] + 0.02
    assert report["holdout_decisions"] >= 2 * 24 * 60 - 1 and report["ess"] > 100
    registry = ModelRegistry(args.registry)
    champion = registry.champion(POLICY_MODEL)
    assert champion.metadata["kind"] == "linear_bandit"
    policy = load_policy(registry)
    best = policy.scores({"x": 2.0}, [(None, None), ("email", "P1"), ("email", "P2")])
    assert max(best, key=best.get) == ("email", "P2")
    # the new champion has no logged decisions of its own yet: nothing to judge it on
    with pytest.raises(UserError, match="no labelled decisions of the champion"):
        main(args)


def test_a_worse_bandit_is_refused_and_the_champion_stays(tmp_path):
    # P2 looked good in the training period and stopped converting in the holdout
    old = logged(5000, seed=12)
    new = logged(3000, seed=13, start=5000 * 60.0, p2_good=False)
    args = write(tmp_path, pd.concat([old, new], ignore_index=True))
    report = main(args)["policy"]
    assert report["promoted"] is False and report["ope_verdict"] == "worse"
    assert "not surely better than the champion" in report["refused"]
    assert "not worth an experiment" in report["refused"] and "experiment" not in report
    registry = ModelRegistry(args.registry)
    assert registry.stage(POLICY_MODEL, "v0001") == "candidate"
    assert load_policy(registry) is None  # the rule still decides


def test_a_candidate_the_holdout_cannot_judge_is_proposed_for_an_experiment(tmp_path):
    from ddso.config import Settings

    # 800 decisions: a holdout of 500 with little exploration of the candidate's actions
    args = write(tmp_path, logged(800, seed=14))
    args.min_holdout, args.holdout_days = 500, 0
    report = main(args)["policy"]
    assert report["promoted"] is False and report["ope_verdict"] == "undecided", report
    assert "judge it online in a champion/challenger experiment" in report["refused"]
    proposed = report["experiment"]
    assert proposed["name"] == "policy-v0001"
    assert [a["policy_version"] for a in proposed["arms"]] == ["rules", report["candidate"]]
    # the proposal is valid settings as it stands
    settings = Settings(experiments={proposed["name"]: proposed})
    assert settings.experiments["policy-v0001"].control == "champion"


@pytest.mark.ray
def test_propensity_and_churn_retrain_on_served_decisions_and_their_outcomes(tmp_path,
                                                                            ray_session):
    import json

    import numpy as np

    from ddso.features.sets import cold_start_features
    from pipelines.retrain import retrain_customer_models

    # 3,000 customers decided on over 60 days; buying within 30 days rises with frequency
    rng = np.random.default_rng(5)
    n = 3000
    frequency = rng.poisson(1.5, n).astype(float)
    decided = np.arange(n) * 60 * DAY / n
    frame = logged(n, seed=15).assign(
        decided_at=decided,
        features=[json.dumps({**cold_start_features(), "frequency_30d": f}) for f in frequency])
    args = write(tmp_path, frame)
    buys = rng.random(n) < 1 / (1 + np.exp(2.5 - 1.2 * frequency))
    kept = pd.DataFrame({"event_id": [f"p{i}" for i in np.flatnonzero(buys)], "type": "purchase",
                         "customer_pseudonym": frame.loc[buys, "customer_pseudonym"].to_numpy(),
                         "event_time": decided[buys] + rng.uniform(0, 20 * DAY, buys.sum()),
                         "decision_id": None, "value": 10.0})
    churns = kept.head(5).assign(event_id=lambda f: "c" + f["event_id"], type="churn")
    LabelStore(args.labels).write(frame.head(0)[["decision_id"]], pd.concat([kept, churns]))
    args.storage = str(tmp_path / "ray_results")

    registry = ModelRegistry(args.registry)
    report = retrain_customer_models(args, registry, tmp_path / "audit", tmp_path / "feedback")
    # the newest outcome is ~80 days in: decisions of the first ~50 days have matured
    propensity = report["propensity"]
    assert 2000 < propensity["rows"] < 2700, report
    assert propensity["stage"] == "champion" and propensity["test_auc"] > 0.7, report
    assert registry.champion("propensity").metadata["data"] == str(tmp_path / "audit")
    assert report["churn"]["positives"] == 5 and "need 500 rows and 20 of each class" in \
        report["churn"]["skipped"]
