"""Redis at the edge: building a client, checking it answers, and naming keys.

The online-store layout lives in ``ddso/stores/``; this module only connects. Values stay
bytes (no ``decode_responses``): features are packed by the store, not by the client.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

from ddso.config import RedisSettings
from ddso.errors import ConfigError, ServiceError

HEALTH_CHECK_INTERVAL_S = 30
"""A pooled connection idle longer than this is PINGed before use, so a dropped one is
replaced instead of failing the first request after a quiet period."""


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def make_redis(settings: RedisSettings) -> redis.Redis:
    """A pooled client for ``settings.url``; nothing is sent until first use.

    Socket timeouts are short (``socket_timeout_s``) because the online store sits on the
    serving path: a slow Redis must fail the request fast rather than eat the latency budget.
    """
    if settings.url is None:
        raise ConfigError(
            "redis.url is not set: set DDSO_REDIS__URL (redis://host:port/db) "
            "or use the in-process online store"
        )
    try:
        return redis.Redis.from_url(
            settings.url,
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            decode_responses=False,
        )
    except ValueError as e:
        raise ConfigError(
            f"redis.url {redact_url(settings.url)!r} is not a Redis URL ({e}); "
            "expected redis://[user:password@]host:port/db or rediss://..."
        ) from None


def ping_or_raise(client: redis.Redis, url: str) -> None:
    """PING ``client``; raise :class:`ServiceError` naming ``url`` (password redacted)."""
    try:
        client.ping()
    except redis.RedisError as e:
        raise ServiceError(
            f"Redis at {redact_url(url)} did not answer PING ({type(e).__name__}: {e}); "
            "check redis.url and that the server is up"
        ) from None


def key(prefix: str, *parts: str) -> str:
    """The Redis key ``prefix`` + ``parts`` joined by ``:``, e.g. ``ddso:features:c42``.

    Only the last part may contain ``:`` (ids may); anywhere else it would make two different
    part lists name the same key.
    """
    for part in parts[:-1]:
        if ":" in part:
            raise ValueError(f"key part {part!r} contains ':'; only the last part may")
    return prefix + ":".join(parts)
