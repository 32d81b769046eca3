"""The one settings object of ddso.

Loaded once per process by :func:`load_settings` and passed down; nothing else reads the
environment. Sources, highest priority first: keyword overrides, ``DDSO_*`` environment
variables (nested with ``__``, e.g. ``DDSO_KAFKA__BOOTSTRAP_SERVERS``), the YAML file given by
``--config`` or ``DDSO_CONFIG``, then the embedded defaults below.

The embedded default needs nothing installed: local Ray with explicit CPUs, an append-only
local event log, an in-process online store and a local model-registry folder. Production
switches by configuration alone: set ``kafka.bootstrap_servers``, ``redis.url``,
``ray.address`` and ``registry_uri``.
"""

from __future__ import annotations

import os
import secrets
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ddso.errors import ConfigError
from ddso.experiments import Experiments

ENV_PREFIX = "DDSO_"
CONFIG_ENV_VAR = "DDSO_CONFIG"
_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("ddso_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RaySettings(_Section):
    address: str | None = Field(
        None, description="Ray cluster address (ray://host:10001 or auto); None starts local Ray."
    )
    num_cpus: int = Field(2, ge=1, description="CPUs given to a local Ray; ignored with address.")
    include_dashboard: bool = Field(False, description="Start the dashboard with local Ray.")
    dashboard_host: str = Field(
        "127.0.0.1", description="Bind address of the dashboard and Jobs API (localhost only)."
    )
    object_store_memory_mb: int = Field(
        1024, ge=100, description="Object store size for a local Ray, in MiB."
    )


class KafkaSettings(_Section):
    bootstrap_servers: str | None = Field(
        None, description="Comma-separated brokers; None uses the embedded local event log."
    )
    events_topic: str = "ddso.events"
    dead_letter_topic: str = "ddso.events.dlq"
    decisions_topic: str = "ddso.decisions"
    group_id: str = "ddso-stream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    max_event_bytes: int = Field(
        64 * 1024, ge=256, description="Events larger than this are dead-lettered as oversize."
    )


class RedisSettings(_Section):
    url: str | None = Field(
        None, description="redis://host:port/db; None uses the in-process online store."
    )
    key_prefix: str = Field("ddso:", description="Prefix of every key ddso writes.")
    feature_ttl_s: int = Field(
        90 * 24 * 3600, ge=60, description="TTL of a customer's online features after last write."
    )
    socket_timeout_s: float = Field(0.5, gt=0)


class StreamSettings(_Section):
    graph_refresh_s: float = Field(
        60.0,
        ge=0,
        allow_inf_nan=False,
        description="How often the stream job recomputes the graph features of the customers "
        "with new purchases or views and writes them to the online store; 0 turns it off.",
    )


class ServeSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class SecuritySettings(_Section):
    api_keys_file: Path | None = Field(
        None, description="API key file of the embedded default; default: <home>/api_keys.json."
    )
    api_key_hash_key: SecretStr | None = Field(
        None,
        description="HMAC secret API keys are hashed with (shared by every replica); default: "
        "a random one kept in <home>/api_key.secret.",
    )
    rate_limit_per_s: float = Field(
        400.0, gt=0, allow_inf_nan=False, description="Requests per second per API key."
    )
    rate_limit_burst: int = Field(800, ge=1, description="Token-bucket size per API key.")
    api_key_cache_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="With Redis: how long a replica trusts a key record it read (a revocation "
        "takes effect within this); recently seen keys keep working while Redis is down.",
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Larger request bodies get 413 (chunked ones included)."
    )
    idempotency_ttl_s: int = Field(3600, ge=60, description="How long a response is replayed.")
    idempotency_lock_ttl_s: float = Field(30.0, gt=0)
    idempotency_wait_s: float = Field(0.5, ge=0)
    idempotency_max_entries: int = Field(100_000, ge=1, description="Embedded store only.")


class Settings(BaseSettings):
    """All of ddso's configuration. Unknown keys anywhere are errors."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    home: Path = Field(
        Path(".ddso"), description="Working folder of the embedded default (data, log, registry)."
    )
    registry_uri: str | None = Field(
        None, description="Model registry folder or URI; default: <home>/registry."
    )
    event_log: Path | None = Field(
        None, description="Embedded append-only event log folder; default: <home>/events."
    )
    offline_store: str | None = Field(
        None, description="Offline store (Parquet) folder or URI; default: <home>/offline."
    )
    pii_key: SecretStr | None = Field(
        None,
        description="HMAC key for pseudonyms; default: a random key kept in <home>/pii.key.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    ray: RaySettings = RaySettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    stream: StreamSettings = StreamSettings()
    serve: ServeSettings = ServeSettings()
    security: SecuritySettings = SecuritySettings()
    experiments: Experiments = Field(
        default_factory=dict,
        description="A/B and champion/challenger experiments by name (ddso.experiments); at "
        "most one active.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit overrides beat the environment, which beats the YAML file.
        file_source = InitSettingsSource(settings_cls, _FILE_VALUES.get() or {})
        return init_settings, env_settings, file_source

    @property
    def embedded(self) -> bool:
        """True when neither Kafka nor Redis is configured."""
        return self.kafka.bootstrap_servers is None and self.redis.url is None

    def registry_path(self) -> str:
        return self.registry_uri or str(self.home / "registry")

    def event_log_path(self) -> Path:
        return self.event_log or self.home / "events"

    def offline_store_path(self) -> str:
        return self.offline_store or str(self.home / "offline")

    def pii_key_bytes(self) -> bytes:
        """The HMAC key; on the embedded default it is created once in ``<home>/pii.key``."""
        return _secret(self.pii_key, self.home / "pii.key")

    def api_keys_path(self) -> Path:
        return self.security.api_keys_file or self.home / "api_keys.json"

    def api_key_hash_key_bytes(self) -> bytes:
        """The API-key hashing secret; embedded: created once in ``<home>/api_key.secret``."""
        return _secret(self.security.api_key_hash_key, self.home / "api_key.secret")


def _secret(configured: SecretStr | None, path: Path) -> bytes:
    """A configured secret, or a random one created once (mode 0600) at ``path``."""
    if configured is not None:
        return configured.get_secret_value().encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            return path.read_text().strip().encode()
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _format_errors(err: ValidationError, origin: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        else:
            parts.append(f"key '{key}': {e['msg']} (got {e.get('input')!r})")
    return f"{origin}: " + "; ".join(parts)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    return data


def _check_env_names(environ: Any) -> None:
    """Reject ``DDSO_*`` variables that name no setting: a typo must not silently fall back."""
    known_top = {name.upper() for name in Settings.model_fields}
    sections = {
        name.upper(): field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    for var in environ:
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV_VAR:
            continue
        rest = var[len(ENV_PREFIX) :]
        top, _, sub = rest.partition("__")
        if top not in known_top:
            raise ConfigError(f"environment: unknown variable {var}; see `ddso config --help`")
        if sub and top in sections:
            known_sub = {n.upper() for n in sections[top].model_fields}
            if sub not in known_sub:
                raise ConfigError(
                    f"environment: unknown variable {var} (no key '{sub.lower()}' "
                    f"in section '{top.lower()}')"
                )


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the YAML file, the ``DDSO_*`` environment and ``overrides``.

    ``config_file`` falls back to ``$DDSO_CONFIG``. Every error names the file or variable
    and the key, and is raised as :class:`ConfigError`.
    """
    _check_env_names(os.environ)
    path = config_file or os.environ.get(CONFIG_ENV_VAR)
    file_values: dict[str, Any] = {}
    origin = "environment"
    if path:
        path = Path(path)
        file_values = _read_yaml(path)
        origin = f"{path} (or DDSO_* environment)"
    token = _FILE_VALUES.set(file_values)
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin)) from None
    finally:
        _FILE_VALUES.reset(token)
