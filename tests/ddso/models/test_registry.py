import pytest

from ddso.errors import ConfigError, UserError
from ddso.models.registry import ModelRegistry, PromotionRefused

pytestmark = pytest.mark.unit


def test_register_promote_and_champion(tmp_path):
    art = tmp_path / "m.bin"
    art.write_bytes(b"model-1")
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(UserError, match="no champion"):
        reg.champion("propensity")
    v1 = reg.register(
        "propensity", {"model.ubj": art}, {"metrics": {"auc": 0.7}, "features": ["a"]}
    )
    assert (
        v1.version == "v0001" and reg.champion("propensity").version == "v0001"
    )  # first is champion
    art.write_bytes(b"model-2")
    v2 = reg.register(
        "propensity", {"model.ubj": art}, {"metrics": {"auc": 0.8}, "features": ["a"]}
    )
    assert v2.version == "v0002" and reg.champion("propensity").version == "v0001"
    reg.promote("propensity", "v0002")
    champ = reg.champion("propensity")
    assert champ.version == "v0002" and champ.artifact("model.ubj").read_bytes() == b"model-2"
    assert champ.metadata["metrics"]["auc"] == 0.8 and champ.artifact_sha256 != v1.artifact_sha256
    assert reg.versions("propensity") == ["v0001", "v0002"]
    assert not [
        p for p in (tmp_path / "reg" / "propensity").iterdir() if p.name.startswith(".staging")
    ]
    with pytest.raises(UserError, match="v0009"):
        reg.promote("propensity", "v0009")


def test_rejects_remote_uri_and_bad_names(tmp_path):
    with pytest.raises(ConfigError, match="s3://"):
        ModelRegistry("s3://bucket/models")
    assert ModelRegistry(f"file://{tmp_path}").root == tmp_path
    with pytest.raises(UserError):
        ModelRegistry(tmp_path).versions("../etc")


def register(reg, tmp_path, auc, holdout="h1"):
    art = tmp_path / f"m{auc}.bin"
    art.write_bytes(str(auc).encode())
    return reg.register("churn", {"model.ubj": art}, {"metrics": {"auc": auc}, "holdout": holdout})


def test_gate_refuses_a_worse_candidate_with_the_numbers(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    v1 = register(reg, tmp_path, 0.80)
    assert reg.stage("churn", v1.version) == "champion"
    v2 = register(reg, tmp_path, 0.75)
    assert reg.stage("churn", v2.version) == "candidate"
    with pytest.raises(PromotionRefused) as e:
        reg.promote("churn", v2.version, metric="auc")
    assert "auc=0.7500" in str(e.value) and "auc=0.8000" in str(e.value)
    assert reg.champion("churn").version == v1.version
    v3 = register(reg, tmp_path, 0.83)
    reg.promote("churn", v3.version, metric="auc")
    assert reg.champion("churn").version == v3.version
    assert reg.stage("churn", v1.version) == "retired"
    assert reg.history("churn")[-1]["candidate_score"] == 0.83
    # lower is better, e.g. log loss
    v4 = register(reg, tmp_path, 0.90)
    with pytest.raises(PromotionRefused):
        reg.promote("churn", v4.version, metric="auc", higher_is_better=False, champion_score=0.5)


def test_different_holdouts_need_the_champion_rescored(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    register(reg, tmp_path, 0.80, holdout="h1")
    v2 = register(reg, tmp_path, 0.78, holdout="h2")
    with pytest.raises(PromotionRefused, match="different holdouts"):
        reg.promote("churn", v2.version, metric="auc")
    reg.promote("churn", v2.version, metric="auc", champion_score=0.76)  # champion on h2
    assert reg.champion("churn").version == v2.version


def test_rollback_restores_the_previous_champion(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    v1 = register(reg, tmp_path, 0.80)
    v2 = register(reg, tmp_path, 0.85)
    reg.promote("churn", v2.version, metric="auc")
    assert reg.rollback("churn").version == v1.version
    assert reg.champion("churn").version == v1.version
    assert reg.history("churn")[-1]["action"] == "rollback"
    with pytest.raises(UserError, match="no predecessor"):
        reg.rollback("churn")
