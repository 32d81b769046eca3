"""Experiments: configuration, sticky assignment, stopped arms, the report and its command."""

import json
import math
from typing import get_args

import numpy as np
import pandas as pd
import pytest

from ddso.cli import main
from ddso.config import load_settings
from ddso.errors import ConfigError, UserError
from ddso.experiment_report import METRICS, format_report, report, run_report
from ddso.experiments import (
    Experiment,
    ExperimentRouter,
    Metric,
    assign,
    bucket,
    read_stopped,
    record_conclusion,
    record_stops,
    state_path,
)
from ddso.pii import pseudonymise

pytestmark = pytest.mark.unit

KEY = b"k" * 32


def ab(name: str = "policy-ab", shares=(0.5, 0.3, 0.2), **extra) -> Experiment:
    return Experiment(
        name=name,
        arms=[
            {"name": "champion", "share": shares[0]},
            {"name": "challenger", "share": shares[1], "policy_version": "v0002"},
            {"name": "rules", "share": shares[2], "policy_version": "rules"},
        ],
        control="champion",
        **extra,
    )


def pseudonyms(n: int) -> list[str]:
    return [pseudonymise(f"C{i:07d}", KEY, kind="customer") for i in range(n)]


# --- configuration ----------------------------------------------------------------------------


def test_shares_must_sum_to_one_and_the_control_must_be_an_arm():
    with pytest.raises(ValueError, match=r"arms\n.*shares must sum to 1, got 0.9"):
        ab(shares=(0.5, 0.3, 0.1))
    with pytest.raises(ValueError, match="control 'nobody' is not one of the arms"):
        Experiment(name="x", control="nobody",
                   arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}])
    with pytest.raises(ValueError, match="arm names must be unique"):
        Experiment(name="x", control="a",
                   arms=[{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}])
    assert set(get_args(Metric)) == set(METRICS)


EXPERIMENTS_YAML = """
experiments:
  policy-ab:
    control: champion
    primary_metric: enrolled
    arms:
      - {name: champion, share: 0.5}
      - {name: challenger, share: 0.5, policy_version: v0002}
    guardrails:
      - {metric: churned, max_degradation: 0.01}
  old-test:
    active: false
    control: a
    arms: [{name: a, share: 0.5}, {name: b, share: 0.5}]
"""


def test_experiments_load_from_yaml_and_the_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "ddso.yaml"
    cfg.write_text(EXPERIMENTS_YAML)
    settings = load_settings(cfg)
    e = settings.experiments["policy-ab"]
    assert e.name == "policy-ab" and e.alpha == 0.05 and e.active
    assert e.guardrails[0].higher_is_worse  # churn: higher is worse by default
    assert not settings.experiments["old-test"].active
    monkeypatch.setenv("DDSO_EXPERIMENTS", json.dumps(
        {"env-ab": {"control": "a", "arms": [{"name": "a", "share": 0.9},
                                             {"name": "b", "share": 0.1}]}}))
    assert list(load_settings().experiments) == ["env-ab"]


def test_configuration_errors_name_the_file_and_key(tmp_path):
    cfg = tmp_path / "ddso.yaml"
    cfg.write_text(EXPERIMENTS_YAML.replace("share: 0.5, policy", "share: 0.4, policy"))
    with pytest.raises(ConfigError, match=r"ddso.yaml.*experiments\.policy-ab\.arms.*sum to 1"):
        load_settings(cfg)
    cfg.write_text(EXPERIMENTS_YAML.replace("active: false", "active: true"))
    with pytest.raises(ConfigError, match="at most one experiment may be active.*policy-ab, old"):
        load_settings(cfg)
    cfg.write_text(EXPERIMENTS_YAML.replace("metric: churned", "metric: happiness"))
    with pytest.raises(ConfigError, match=r"experiments\.policy-ab\.guardrails\.0\.metric"):
        load_settings(cfg)
    cfg.write_text(EXPERIMENTS_YAML.replace("primary_metric", "primary"))
    with pytest.raises(ConfigError, match="unknown key 'experiments.policy-ab.primary'"):
        load_settings(cfg)


# --- assignment -------------------------------------------------------------------------------


def test_assignment_is_sticky_and_matches_the_shares():
    e = ab()
    ids = pseudonyms(100_000)
    first = [assign(e, p).name for p in ids]
    again = [assign(ab(), p).name for p in reversed(ids)][::-1]  # another object, other order
    assert first == again
    counts = pd.Series(first).value_counts()
    for arm in e.arms:
        sd = math.sqrt(arm.share * (1 - arm.share) / len(ids))
        assert abs(counts[arm.name] / len(ids) - arm.share) < 4 * sd, (arm.name, counts)


def test_experiments_are_independent():
    ids = pseudonyms(40_000)
    one = np.array([assign(ab("one", (0.5, 0.5, 0.0)), p).name for p in ids])
    two = np.array([assign(ab("two", (0.5, 0.5, 0.0)), p).name for p in ids])
    assert (one != two).mean() == pytest.approx(0.5, abs=0.02)  # half agree, as by chance
    within = (two[one == "champion"] == "champion").mean()
    assert within == pytest.approx(0.5, abs=0.02)
    assert "rules" not in set(one)  # a zero share is never assigned


def test_a_share_moved_between_neighbours_moves_only_the_customers_between_the_boundaries():
    """champion 0.5 | challenger 0.3 | rules 0.2 -> champion 0.5 | challenger 0.4 | rules 0.1:
    only customers with bucket in [0.8, 0.9) move, all from rules to challenger."""
    ids = pseudonyms(50_000)
    before, after = ab(), ab(shares=(0.5, 0.4, 0.1))
    moved = [(p, assign(before, p).name, assign(after, p).name) for p in ids
             if assign(before, p).name != assign(after, p).name]
    assert {(b, a) for _, b, a in moved} == {("rules", "challenger")}
    assert all(0.8 <= bucket(before.name, p) < 0.9 for p, _, _ in moved)
    assert len(moved) / len(ids) == pytest.approx(0.1, abs=0.01)
    # Growing the first arm instead shifts the boundary it shares with the next one only.
    grown = ab(shares=(0.6, 0.2, 0.2))
    changes = {(assign(before, p).name, assign(grown, p).name) for p in ids[:5000]}
    assert changes - {(a, a) for a in ("champion", "challenger", "rules")} == {
        ("challenger", "champion")
    }


def test_a_stopped_arm_sends_its_customers_to_control(tmp_path):
    e = ab()
    ids = pseudonyms(2000)
    stopped = {"challenger"}
    for p in ids:
        arm = assign(e, p, stopped).name
        assert arm != "challenger"
        assert arm == ("champion" if assign(e, p).name == "challenger" else assign(e, p).name)


def test_the_router_honours_stops_and_the_experiment_window(tmp_path):
    e = ab(start="2025-01-01T00:00:00Z", end="2025-02-01T00:00:00Z")
    router = ExperimentRouter(e, tmp_path, refresh_s=0.0)
    in_window, before = 1736000000.0, 1735000000.0  # 2025-01-04, 2024-12-24
    ids = pseudonyms(500)
    assert router.route(ids[0], before) is None
    assert {router.route(p, in_window).name for p in ids} == {"champion", "challenger", "rules"}
    record_stops(tmp_path, e.name, {"challenger": "a test"})
    assert {router.route(p, in_window).name for p in ids} == {"champion", "rules"}
    assert router.route(ids[0], in_window).name == assign(e, ids[0], {"challenger"}).name
    inactive = ExperimentRouter(ab(active=False), tmp_path)
    assert inactive.route(ids[0], in_window) is None


def test_stops_are_kept_and_written_atomically(tmp_path):
    assert read_stopped(tmp_path, "x") == {}
    first = record_stops(tmp_path, "x", {"b": "churn up"})
    again = record_stops(tmp_path, "x", {"b": "later", "c": "revenue down"})
    assert again["b"] == first["b"] and set(again) == {"b", "c"}  # the first stop stands
    assert json.loads(state_path(tmp_path, "x").read_text())["stopped"] == again
    assert [p.name for p in (tmp_path / "experiments").iterdir()] == ["x.json"]
    state_path(tmp_path, "x").write_text("{not json")
    with pytest.raises(UserError, match="x.json: not a readable experiment state file"):
        read_stopped(tmp_path, "x")


# --- the report -------------------------------------------------------------------------------


def labels_frame(n: int = 6000, churn=(0.02, 0.08, 0.02), enrol=(0.05, 0.05, 0.05),
                 seed: int = 0) -> pd.DataFrame:
    """Labels as the feedback job writes them, for the three arms of :func:`ab`."""
    rng = np.random.default_rng(seed)
    arms = rng.choice(["champion", "challenger", "rules"], size=n, p=[0.5, 0.3, 0.2])
    index = pd.Series(arms).map({"champion": 0, "challenger": 1, "rules": 2}).to_numpy()
    enrolled = rng.random(n) < np.array(enrol)[index]
    return pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(n)],
        "decided_at": 1.7e9 + np.arange(n) * 10.0,
        "experiment": "policy-ab",
        "arm": arms,
        "accepted": (rng.random(n) < 0.1).astype(int),
        "enrolled": enrolled.astype(int),
        "graduated": (enrolled & (rng.random(n) < 0.5)).astype(int),
        "churned": (rng.random(n) < np.array(churn)[index]).astype(int),
        "purchased": 0,
        "revenue": np.where(enrolled, 120.0, 0.0),
    })


GUARDED = {"guardrails": [{"metric": "churned", "max_degradation": 0.01},
                          {"metric": "revenue", "max_degradation": 5.0}]}


def test_report_gives_per_arm_rates_and_stops_the_arm_breaching_a_guardrail():
    labels = labels_frame()
    other = labels.head(50).assign(experiment="another")
    r = report(ab(**GUARDED), pd.concat([labels, other], ignore_index=True))
    assert r.rows == len(labels)
    arms = {s.arm: s for s in r.arms}
    champion = labels[labels["arm"] == "champion"]
    assert arms["champion"].n == len(champion)
    rate, low, high = arms["champion"].rates["churned"]
    assert rate == pytest.approx(champion["churned"].mean()) and low < rate < high
    assert arms["champion"].revenue[0] == pytest.approx(champion["revenue"].mean())
    assert arms["challenger"].policy == "v0002" and arms["rules"].policy == "rule"
    churn = {c.arm: c for c in r.comparisons if c.metric == "churned"}
    assert churn["challenger"].verdict == "breached" and churn["challenger"].ci_low > 0.01
    assert churn["rules"].verdict != "breached"
    assert list(r.newly_stopped) == ["challenger"] and arms["challenger"].stopped
    assert "guardrail churned" in r.newly_stopped["challenger"]
    text = format_report(r)
    assert "STOPPED" in text and "stopped challenger" in text and "always-valid" in text
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["experiment"] == "policy-ab"
    # Stopped before: reported as stopped, not stopped again.
    again = report(ab(**GUARDED), labels, stopped={"challenger"})
    assert again.newly_stopped == {} and {s.arm: s.stopped for s in again.arms}["challenger"]


def test_report_with_no_difference_stops_nothing_and_decides_nothing():
    r = report(ab(**GUARDED), labels_frame(churn=(0.02, 0.02, 0.02), seed=4))
    assert r.newly_stopped == {}
    assert {c.verdict for c in r.comparisons if c.role == "primary"} == {"undecided"}


def test_report_needs_the_experiment_columns():
    labels = labels_frame().drop(columns=["arm"])
    with pytest.raises(UserError, match="missing column.*arm"):
        report(ab(), labels)
    empty = report(ab(), labels_frame().iloc[:0])
    assert empty.rows == 0 and all(s.n == 0 for s in empty.arms)
    assert "decisions" in format_report(empty)


def test_run_report_records_the_stop(tmp_path):
    path = tmp_path / "labels.parquet"
    labels_frame().to_parquet(path)
    r = run_report(tmp_path, ab(**GUARDED), path)
    assert list(read_stopped(tmp_path, "policy-ab")) == list(r.newly_stopped) == ["challenger"]


# --- the command line -------------------------------------------------------------------------


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture
def configured(tmp_path, monkeypatch):
    cfg = tmp_path / "ddso.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\n" + EXPERIMENTS_YAML.replace(
        "policy_version: v0002}", "policy_version: v0002}\n      - {name: rules, share: 0.0}"))
    monkeypatch.setenv("DDSO_CONFIG", str(cfg))
    return tmp_path


def test_cli_report_prints_writes_json_and_stops(configured, capsys):
    labels = configured / "labels.parquet"
    labels_frame().to_parquet(labels)
    out = configured / "report.json"
    assert main(["experiments", "report", "policy-ab", "--labels", str(labels),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "experiment policy-ab" in printed and "stopped challenger" in printed
    written = json.loads(out.read_text())
    assert written["newly_stopped"].keys() == {"challenger"}
    assert main(["experiments", "list"]) == 0
    listed = capsys.readouterr().out
    assert "policy-ab: active" in listed and "challenger 50% (v0002) STOPPED" in listed
    assert "old-test: inactive" in listed
    # the retraining job's conclusion keeps the stops and shows in the list
    record_conclusion(configured / "home", "policy-ab", "challenger", "better",
                      promoted="engagement_policy:v0002")
    assert read_stopped(configured / "home", "policy-ab").keys() == {"challenger"}
    assert main(["experiments", "list"]) == 0
    assert ("policy-ab: concluded" in (listed := capsys.readouterr().out)
            and "(winner challenger, promoted engagement_policy:v0002)" in listed)


def test_cli_reads_the_label_store_by_default(configured, capsys):
    from ddso.policy.labelling import LabelStore

    LabelStore(configured / "home" / "feedback").write(labels_frame(), pd.DataFrame())
    assert main(["experiments", "report", "policy-ab"]) == 0
    assert "experiment policy-ab: 6000 decisions" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["experiments", "report", "nope"], "no experiment 'nope' in the configuration"),
        (["experiments", "report", "policy-ab", "--labels", "/no/such.parquet"],
         "/no/such.parquet: no labels here"),
    ],
)
def test_cli_errors_exit_2_with_one_line(configured, capsys, argv, needle):
    assert main(argv) == 2
    assert needle in one_line_error(capsys)


def test_cli_missing_columns_exit_2(configured, capsys):
    labels = configured / "old.parquet"
    labels_frame().drop(columns=["experiment", "arm"]).to_parquet(labels)
    assert main(["experiments", "report", "policy-ab", "--labels", str(labels)]) == 2
    err = one_line_error(capsys)
    assert str(labels) in err and "missing column(s) experiment, arm" in err
