import pytest

from ddso.errors import ConfigError, UserError
from ddso.models.registry import ModelRegistry

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
