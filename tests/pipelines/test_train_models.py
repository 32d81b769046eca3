"""The churn, conversion and assessment training jobs end to end on one generated dataset."""

import json

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.integration]

REPORT_KEYS = ("test_auc", "test_pr_auc", "test_log_loss", "test_brier", "test_ece")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from ddso.data.generator import GeneratorConfig, generate

    data = tmp_path_factory.mktemp("train-models") / "data"
    generate(GeneratorConfig(customers=30_000, days=240, seed=5), data, progress=False)
    return data


def _report(path):
    report = json.loads(path.read_text())
    for key in REPORT_KEYS:
        assert np.isfinite(report[key]), key
    assert report["rows_train"] > 0 and report["rows_test"] > 0
    return report


def test_churn_and_conversion_train_register_and_report(ray_session, dataset, tmp_path):
    from ddso.models.binary import BinaryModel
    from ddso.models.registry import ModelRegistry
    from pipelines import train_churn, train_conversion

    registry = tmp_path / "registry"
    churn = train_churn.main(train_churn.Args(
        data=str(dataset), registry=str(registry), storage=str(tmp_path / "ray"), cutoffs=3,
        json=str(tmp_path / "churn.json")))
    report = _report(tmp_path / "churn.json")
    assert report["test_auc"] > 0.7  # churn is driven by observable activity and complaints
    assert churn.metadata["split"]["test_from"] > churn.metadata["split"]["valid_from"]

    conversion = train_conversion.main(train_conversion.Args(
        data=str(dataset), registry=str(registry), storage=str(tmp_path / "ray"),
        json=str(tmp_path / "conversion.json")))
    _report(tmp_path / "conversion.json")
    assert "channel_is_preferred" in conversion.metadata["features"]
    model = BinaryModel.load(ModelRegistry(registry).champion("conversion"))
    assert model.calibrator.method in ("platt", "isotonic")


def test_assessment_scores_bands_reasons_eligibility_and_graduation(ray_session, dataset,
                                                                     tmp_path):
    from ddso.data.dataset import Dataset
    from ddso.features.sets import cold_start_features
    from ddso.models.assessment import RISK_FEATURES, Assessor
    from ddso.models.registry import ModelRegistry
    from ddso.models.scorecard import band
    from ddso.policy.eligibility import why_ineligible
    from pipelines import train_assessment

    registry = ModelRegistry(tmp_path / "registry")
    train_assessment.main(train_assessment.Args(
        data=str(dataset), registry=str(registry.root), storage=str(tmp_path / "ray"),
        json=str(tmp_path / "assess")))
    _report(tmp_path / "assess.assessment_risk.json")
    _report(tmp_path / "assess.graduation.json")

    products = Dataset(dataset).table("products")
    assessor = Assessor.from_registry(registry, products)
    base = {**cold_start_features(), "age": 40.0, "monthly_income": 3000.0,
            "debt_to_income": 0.2, "on_time_ratio_12m": 1.0}
    healthy = assessor.assess({f: base[f] for f in RISK_FEATURES})
    assert 0 <= healthy.score <= 1000 and healthy.band == band(healthy.score).value
    # More delinquencies never make a customer healthier (the monotonic constraint).
    scores = [assessor.assess({**base, "delinquencies_24m": d}).score for d in range(6)]
    assert all(b <= a + 1e-9 for a, b in zip(scores, scores[1:], strict=False))
    # Reasons are factors the model used, in words; eligibility agrees with the rule table.
    stressed = assessor.assess({**base, "delinquencies_24m": 4.0, "late_payments_12m": 6.0,
                                "on_time_ratio_12m": 0.5, "debt_to_income": 0.8})
    assert stressed.score < healthy.score
    assert stressed.reasons and all(r.contribution != 0 and r.text for r in stressed.reasons)
    catalogue = products.set_index("product_id")
    facts = {"band": stressed.band, "debt_to_income": 0.8, "age": 40.0, "monthly_income": 3000}
    for pid in catalogue.index[catalogue["program_kind"].notna()]:
        limits = {k.removeprefix("eligibility_"): v for k, v in catalogue.loc[pid].items()
                  if k.startswith("eligibility_")}
        limits = {k: (None if pd.isna(v) else v) for k, v in limits.items()}
        assert (pid in stressed.eligible_programs) == (why_ineligible(limits, facts) is None)
    assert set(healthy.graduation_likelihood) == set(healthy.eligible_programs)
    assert all(0 <= p <= 1 for p in healthy.graduation_likelihood.values())
