"""ddso train propensity: any tabular file, clear errors, registered model and metrics."""

import json

import numpy as np
import pandas as pd
import pytest

from ddso.cli import main

pytestmark = pytest.mark.unit


@pytest.fixture
def table(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSO_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=n)
    plan = rng.choice(["gold", "silver", "basic"], n)
    p = 1 / (1 + np.exp(-(2 * x + (plan == "gold") * 1.5 - 0.5)))
    frame = pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(n)],
            "signup": pd.date_range("2024-01-01", periods=n, freq="h"),
            "x": x,
            "plan": plan,
            "bought": np.where(rng.random(n) < p, "Yes", "no"),
        }
    )
    return frame


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_csv_with_cross_validation_and_parquet_with_time_split(table, tmp_path, capsys):
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "m.json"
    code, stdout, _ = run(
        [
            "train",
            "propensity",
            "--data",
            str(csv),
            "--target",
            "bought",
            "--id",
            "customer",
            "--json",
            str(out),
        ],
        capsys,
    )
    m = json.loads(out.read_text())
    assert code == 0 and m["auc"] > 0.75 and "cross-validation" in m["validation"]
    assert m["features"] == 3  # signup is a feature here: no --time given
    assert m["model"] == "propensity_custom:v0001"
    pq = tmp_path / "t.parquet"
    table.to_parquet(pq)
    code, stdout, _ = run(
        [
            "train",
            "propensity",
            "--data",
            str(pq),
            "--target",
            "bought",
            "--id",
            "customer",
            "--time",
            "signup",
        ],
        capsys,
    )
    m = json.loads(stdout)
    assert code == 0 and "time split" in m["validation"] and m["features"] == 2
    assert m["model"] == "propensity_custom:v0002"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: t.drop(columns=["bought"]), "no target column 'bought'"),
        (lambda t: t.assign(bought="yes"), "constant"),
        (lambda t: t.assign(bought="maybe"), "must be yes/no"),
    ],
)
def test_target_errors_exit_2(table, tmp_path, capsys, change, needle):
    csv = tmp_path / "t.csv"
    change(table).to_csv(csv, index=False)
    code, _, err = run(["train", "propensity", "--data", str(csv), "--target", "bought"], capsys)
    assert code == 2 and needle in err and "\n" not in err


def test_unreadable_and_missing_files_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    code, _, err = run(["train", "propensity", "--data", str(bad), "--target", "y"], capsys)
    assert code == 2 and "bad.parquet" in err and "not a readable" in err
    code, _, err = run(
        ["train", "propensity", "--data", str(tmp_path / "no.csv"), "--target", "y"], capsys
    )
    assert code == 2 and "no such file" in err
