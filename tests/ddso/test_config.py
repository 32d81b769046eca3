import pytest

from ddso.config import load_settings
from ddso.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for var in list(os.environ):
        if var.startswith("DDSO_"):
            monkeypatch.delenv(var)


def test_embedded_defaults():
    s = load_settings()
    assert s.embedded
    assert s.ray.address is None and s.ray.num_cpus == 2
    assert s.kafka.bootstrap_servers is None and s.redis.url is None
    assert s.registry_path().endswith("registry")
    assert s.ray.dashboard_host == "127.0.0.1"


def test_yaml_then_env_then_overrides(tmp_path, monkeypatch):
    cfg = tmp_path / "ddso.yaml"
    cfg.write_text(
        "kafka:\n  bootstrap_servers: k1:9092\n"
        "redis:\n  url: redis://r:6379/0\n"
        "ray:\n  num_cpus: 4\n"
    )
    s = load_settings(cfg)
    assert s.kafka.bootstrap_servers == "k1:9092" and s.redis.url == "redis://r:6379/0"
    assert not s.embedded
    monkeypatch.setenv("DDSO_RAY__NUM_CPUS", "3")
    assert load_settings(cfg).ray.num_cpus == 3
    monkeypatch.setenv("DDSO_CONFIG", str(cfg))
    assert load_settings().kafka.bootstrap_servers == "k1:9092"
    assert load_settings(registry_uri="/models").registry_path() == "/models"


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("redis:\n  ulr: redis://x\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert (
        str(cfg) in str(e.value) and "redis.ulr" in str(e.value) and "unknown key" in str(e.value)
    )


def test_bad_value_names_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("ray:\n  num_cpus: 0\n")
    with pytest.raises(ConfigError, match=r"ray\.num_cpus"):
        load_settings(cfg)


def test_unknown_env_variable_is_an_error(monkeypatch):
    monkeypatch.setenv("DDSO_REDIS__ULR", "redis://x")
    with pytest.raises(ConfigError, match="DDSO_REDIS__ULR"):
        load_settings()
    monkeypatch.delenv("DDSO_REDIS__ULR")
    monkeypatch.setenv("DDSO_NOPE", "1")
    with pytest.raises(ConfigError, match="DDSO_NOPE"):
        load_settings()


def test_invalid_yaml_and_missing_file(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("ray: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_settings(tmp_path / "missing.yaml")


def test_pii_key_created_once_and_private(tmp_path):
    s = load_settings(home=tmp_path)
    k1 = s.pii_key_bytes()
    assert len(k1) == 64 and k1 == s.pii_key_bytes()
    assert (tmp_path / "pii.key").stat().st_mode & 0o777 == 0o600
    assert load_settings(pii_key="secret").pii_key_bytes() == b"secret"
    assert "secret" not in repr(load_settings(pii_key="secret"))
