import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import fsspec
import pytest

from ddso.errors import ConfigError, UserError
from ddso.models.registry import ModelRegistry, PromotionRefused

pytestmark = pytest.mark.unit


@pytest.fixture(params=["folder", "memory"])
def root(request, tmp_path):
    """A registry root: a local folder, or a fresh memory:// URI (an object store in-process)."""
    if request.param == "folder":
        yield str(tmp_path / "reg")
        return
    uri = f"memory://reg-{uuid.uuid4().hex}"
    yield uri
    memory = fsspec.filesystem("memory")
    if memory.exists(uri):
        memory.rm(uri, recursive=True)


@pytest.fixture
def reg(root, tmp_path):
    return ModelRegistry(root, cache_dir=tmp_path / "cache")


def test_register_promote_and_champion(reg, tmp_path):
    art = tmp_path / "m.bin"
    art.write_bytes(b"model-1")
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
    assert v1.artifact("model.ubj").read_bytes() == b"model-1"
    assert champ.metadata["metrics"]["auc"] == 0.8 and champ.artifact_sha256 != v1.artifact_sha256
    assert reg.versions("propensity") == ["v0001", "v0002"]
    with pytest.raises(UserError, match="v0009"):
        reg.promote("propensity", "v0009")
    with pytest.raises(UserError, match="no artifact 'other.bin'.*model.ubj"):
        champ.artifact("other.bin")


def test_artifacts_of_a_remote_registry_are_cached_local_files(tmp_path):
    art = tmp_path / "model.ubj"
    art.write_bytes(b"weights")
    reg = ModelRegistry(f"memory://cached-{uuid.uuid4().hex}", cache_dir=tmp_path / "cache")
    version = reg.register("churn", {"model.ubj": art}, {"metrics": {}})
    assert version.uri.startswith("memory://") and version.uri.endswith("/churn/v0001")
    local = version.artifact("model.ubj")
    assert local.is_relative_to(tmp_path / "cache") and local.read_bytes() == b"weights"
    assert local.name == "model.ubj"  # loaders that look at the suffix still work
    assert version.artifact("model.ubj") == local
    # A changed artifact is refused rather than loaded.
    local.unlink()
    reg.fs.pipe_file(f"{reg.root}/churn/v0001/model.ubj", b"tampered")
    with pytest.raises(UserError, match="sha256 differs"):
        version.artifact("model.ubj")
    assert not local.exists()


def test_local_registry_hands_out_the_file_itself(tmp_path):
    art = tmp_path / "m.bin"
    art.write_bytes(b"x")
    reg = ModelRegistry(f"file://{tmp_path}/reg")
    assert reg.root == str(tmp_path / "reg")
    version = reg.register("churn", {"model.ubj": art}, {"metrics": {}})
    assert version.artifact("model.ubj") == tmp_path / "reg" / "churn" / "v0001" / "model.ubj"
    assert ModelRegistry(tmp_path / "reg").champion("churn").version == "v0001"


def test_a_half_written_version_is_invisible_and_its_number_skipped(reg, tmp_path):
    art = tmp_path / "m.bin"
    art.write_bytes(b"x")
    reg.register("churn", {"model.ubj": art}, {"metrics": {}})
    # A writer that died after claiming v0002 and uploading its artifact, before metadata.
    reg.fs.makedirs(f"{reg.root}/churn/v0002", exist_ok=True)
    reg.fs.pipe_file(f"{reg.root}/churn/v0002/.claim", b"{}")
    reg.fs.pipe_file(f"{reg.root}/churn/v0002/model.ubj", b"partial")
    assert reg.versions("churn") == ["v0001"]
    with pytest.raises(UserError, match="no version 'v0002'"):
        reg.get("churn", "v0002")
    assert reg.register("churn", {"model.ubj": art}, {"metrics": {}}).version == "v0003"


def test_a_failed_upload_leaves_nothing_behind(reg, tmp_path):
    art = tmp_path / "m.bin"
    art.write_bytes(b"x")
    reg.register("churn", {"model.ubj": art}, {"metrics": {}})
    with pytest.raises(FileNotFoundError):
        reg.register("churn", {"a.bin": art, "b.bin": tmp_path / "missing"}, {"metrics": {}})
    assert reg.versions("churn") == ["v0001"]
    assert not reg.fs.exists(f"{reg.root}/churn/v0002")


def test_champion_and_history_live_in_one_json(reg, tmp_path):
    v1 = register(reg, tmp_path, 0.80)
    v2 = register(reg, tmp_path, 0.85)
    reg.promote("churn", v2.version, metric="auc")
    state = json.loads(reg.fs.cat_file(f"{reg.root}/churn/CHAMPION"))
    assert state["champion"] == v2.version
    assert [e["version"] for e in state["history"]] == [v1.version, v2.version]


def test_reads_the_earlier_plain_text_pointer(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    v1 = register(reg, tmp_path, 0.80)
    v2 = register(reg, tmp_path, 0.85)
    model_dir = tmp_path / "reg" / "churn"
    (model_dir / "CHAMPION").write_text(v2.version + "\n")
    lines = [{"action": "promote", "version": v, "previous": p}
             for v, p in ((v1.version, None), (v2.version, v1.version))]
    (model_dir / "HISTORY").write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert reg.champion("churn").version == v2.version
    assert reg.rollback("churn").version == v1.version
    assert reg.stage("churn", v2.version) == "retired"
    assert not (model_dir / "HISTORY").exists()


def test_uris_the_machine_cannot_open_and_bad_names(reg, tmp_path):
    # s3fs is not a dependency: the error names the URI and the missing package.
    with pytest.raises(ConfigError, match=r"s3://bucket/models.*s3fs"):
        ModelRegistry("s3://bucket/models")
    with pytest.raises(ConfigError, match="nosuch://x"):
        ModelRegistry("nosuch://x")
    with pytest.raises(UserError):
        reg.versions("../etc")
    with pytest.raises(UserError, match="no version"):
        reg.get("churn", "../../etc")


def register(reg, tmp_path, auc, holdout="h1"):
    art = tmp_path / f"m{auc}.bin"
    art.write_bytes(str(auc).encode())
    return reg.register("churn", {"model.ubj": art}, {"metrics": {"auc": auc}, "holdout": holdout})


def test_gate_refuses_a_worse_candidate_with_the_numbers(reg, tmp_path):
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


def test_different_holdouts_need_the_champion_rescored(reg, tmp_path):
    register(reg, tmp_path, 0.80, holdout="h1")
    v2 = register(reg, tmp_path, 0.78, holdout="h2")
    with pytest.raises(PromotionRefused, match="different holdouts"):
        reg.promote("churn", v2.version, metric="auc")
    reg.promote("churn", v2.version, metric="auc", champion_score=0.76)  # champion on h2
    assert reg.champion("churn").version == v2.version


def test_rollback_restores_the_previous_champion(reg, tmp_path):
    v1 = register(reg, tmp_path, 0.80)
    v2 = register(reg, tmp_path, 0.85)
    reg.promote("churn", v2.version, metric="auc")
    assert reg.rollback("churn").version == v1.version
    assert reg.champion("churn").version == v1.version
    assert reg.history("churn")[-1]["action"] == "rollback"
    with pytest.raises(UserError, match="no predecessor"):
        reg.rollback("churn")


def test_concurrent_writers_get_distinct_versions(root, tmp_path):
    writers = 6
    listed = threading.Barrier(writers, timeout=30)

    class Racing(ModelRegistry):
        """Every writer lists the versions before any of them claims a number."""

        def _numbered(self, name):
            found = super()._numbered(name)
            listed.wait()
            return found

    reg = Racing(root, cache_dir=tmp_path / "cache")
    arts = []
    for i in range(writers):
        arts.append(tmp_path / f"m{i}.bin")
        arts[-1].write_bytes(f"model-{i}".encode())
    with ThreadPoolExecutor(writers) as pool:
        versions = list(pool.map(lambda a: reg.register("churn", {"model.ubj": a}, {}), arts))
    assert sorted(v.version for v in versions) == [f"v{i:04d}" for i in range(1, writers + 1)]
    plain = ModelRegistry(root, cache_dir=tmp_path / "cache")
    for art, version in zip(arts, versions, strict=True):
        stored = plain.get("churn", version.version).artifact("model.ubj")
        assert stored.read_bytes() == art.read_bytes()
