"""``ddso report``: every section from real inputs, numbers equal to the sources and to hand
computations, missing inputs named, bad ones exit 2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ddso.cli import main
from ddso.report import CONVERSION, SECTIONS, cumulative_by_arm, write_report
from ddso.sequential import wilson_interval
from tests.ddso.policy.test_uplift import DAY, START, TRUE_UPLIFT, hand_uplift, logged_decisions


@pytest.mark.unit
def test_cumulative_conversion_per_arm_by_day_with_wilson_bands():
    labels = pd.DataFrame({
        "decided_at": START + np.array([0.1, 0.2, 1.1, 1.2, 1.3, 0.5, 2.5]) * DAY,
        "arm": ["a", "a", "a", "a", "a", "b", None],
        "experiment": "x",
        CONVERSION: [1, 0, 1, 1, 0, 1, 1]})
    cum = cumulative_by_arm(labels)
    a = cum[cum["arm"] == "a"]
    assert list(a["decisions"]) == [2, 5] and list(a["conversions"]) == [1, 3]
    assert list(a["rate"]) == [0.5, 0.6] and len(cum[cum["arm"] == "b"]) == 1
    assert (a["ci_low"].iloc[1], a["ci_high"].iloc[1]) == wilson_interval(3, 5)


@pytest.mark.unit
def test_missing_inputs_are_named_in_their_sections(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DDSO_HOME", str(tmp_path / "home"))
    assert main(["report", "--out", str(tmp_path / "out")]) == 0
    assert str(tmp_path / "out" / "index.html") in capsys.readouterr().out
    page = (tmp_path / "out" / "index.html").read_text()
    assert "no labels yet: run python -m pipelines.feedback" in page
    assert "no models in the registry" in page and "python -m pipelines.train_policy" in page
    assert "no audit records" in page
    assert all(f'<h2 id="{key}">{title}</h2>' in page for key, title in SECTIONS)


@pytest.mark.unit
def test_cli_exits_2_on_bad_out_and_bad_inputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DDSO_HOME", str(tmp_path / "home"))
    not_parquet = tmp_path / "labels.parquet"
    not_parquet.write_text("decision_id,enrolled\n")
    no_column = tmp_path / "thin.parquet"
    pd.DataFrame({"decision_id": ["d1"], "enrolled": [1]}).to_parquet(no_column)
    cases = [
        (["--out", str(not_parquet / "report")], "cannot write there"),
        (["--out", str(tmp_path / "r"), "--labels", str(not_parquet)],
         f"{not_parquet}: not a readable Parquet"),
        (["--out", str(tmp_path / "r"), "--labels", str(no_column)], "decided_at, channel"),
        (["--out", str(tmp_path / "r"), "--labels", str(tmp_path / "nope")], "no such file"),
    ]
    for argv, needle in cases:
        assert main(["report", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and needle in err, err


def binary_frame(n: int = 4_000, days: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    p = 1 / (1 + np.exp(-(-2.0 + 1.5 * x[:, 0] - 0.8 * x[:, 1])))
    return pd.DataFrame({
        "timestamp": pd.Timestamp("2025-01-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, days, n), unit="D"),
        "x1": x[:, 0], "x2": x[:, 1], "label": (rng.random(n) < p).astype("int32")})


@pytest.mark.ray
@pytest.mark.integration
def test_report_from_a_trained_registry_labels_and_audit(ray_session, tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    from ddso.audit import SCHEMA
    from ddso.experiments import Arm, Experiment
    from ddso.models.binary import TEST_PREDICTIONS_FILE
    from ddso.models.registry import ModelRegistry
    from pipelines._train import fit_register
    from pipelines.train_policy import write_curve

    registry = tmp_path / "registry"
    _, version = fit_register("demo_propensity", binary_frame(), ["x1", "x2"], "label",
                              registry=str(registry), storage=str(tmp_path / "ray"),
                              data=str(tmp_path), describe="a planted logistic label")
    capsys.readouterr()
    predictions = pd.read_parquet(version.artifact(TEST_PREDICTIONS_FILE))
    auc = version.metadata["metrics"]["test_auc"]
    assert len(predictions) == version.metadata["metrics"]["test_rows"]
    assert roc_auc_score(predictions["label"], predictions["calibrated"]) == pytest.approx(auc)

    curve_dir = tmp_path / "curve"
    curve_dir.mkdir()
    curve = [{"iteration": i, "env_steps": 4000 * i, "episodes": 10 * i,
              "episode_return_mean": 0.1 * i, "episode_len_mean": 30.0, "wall_s": 2.0 * i,
              "env_steps_per_s": 2000.0, "policy_loss": 0.1, "vf_loss": 0.2,
              "entropy": 4.0 - 0.2 * i, "mean_kl": 0.01} for i in range(1, 6)]
    np.savez(curve_dir / "policy.npz", w=np.zeros(2))
    ModelRegistry(registry).register(
        "engagement_policy", {"policy.npz": curve_dir / "policy.npz",
                              **write_curve(curve, curve_dir)},
        {"metrics": {"eval_mean_return": 0.52, "bau_mean_return": 0.31}})

    labels, audit = logged_decisions(6_000, seed=1)
    labels.drop(columns="contact_p").to_parquet(tmp_path / "labels.parquet")
    (tmp_path / "audit").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(audit)), 2)):
        rows = audit.iloc[part].assign(
            customer_pseudonym="c", cold_start=False, request="{}", features="{}", facts="{}",
            offers="[]", offer_id=None, propensity=0.5, experiment="contact_test",
            arm=labels["arm"].iloc[part].to_numpy())
        pq.write_table(pa.Table.from_pandas(rows[SCHEMA.names], schema=SCHEMA,
                                            preserve_index=False),
                       tmp_path / "audit" / f"audit-{i}.parquet")

    out = tmp_path / "report"
    experiment = Experiment(name="contact_test", control="control",
                            arms=[Arm(name="control", share=0.5),
                                  Arm(name="treatment", share=0.5)])
    write_report(out, registry=str(registry), labels=tmp_path / "labels.parquet",
                 audit=tmp_path / "audit", experiments={"contact_test": experiment},
                 home=tmp_path / "home")
    page = (out / "index.html").read_text()
    for name in ("model_demo_propensity.png", "policy_engagement_policy.png", "uplift.png",
                 "experiments.png", "decisions.png"):
        assert (out / name).stat().st_size > 5_000, name
        assert f'src="{name}"' in page
    assert all(f'<h2 id="{key}">{title}</h2>' in page for key, title in SECTIONS)
    assert f"{auc:.4f}" in page and "no labels yet" not in page
    for name in TRUE_UPLIFT:
        naive, ips = hand_uplift(labels[labels["segment"] == name])
        assert f"{naive:.4f}" in page and f"{ips:.4f}" in page, name
    assert "0.5200" in page and "contact_test" in page and "always-valid" in page
    treated = labels[labels["arm"] == "treatment"]
    assert f"{treated[CONVERSION].mean():.4f}" in page
