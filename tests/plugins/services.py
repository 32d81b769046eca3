"""Real-service fixtures: the Kafka-protocol broker (tansu) and Redis.

One tansu broker serves the whole session (group joins cost seconds, broker starts do not,
but sharing keeps the suite's process count flat); each test gets its own topic names and
group id, so tests never see each other's records. Redis is the server already running at
127.0.0.1:6379; each test writes under its own key prefix, deleted afterwards.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
import redis

from ddso.config import KafkaSettings, RedisSettings
from ddso.errors import ServiceError
from ddso.io.local_broker import LocalBroker
from ddso.io.redis import make_redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a tansu broker (memory storage) started for this test session."""
    try:
        broker = LocalBroker(tmp_path_factory.mktemp("tansu") / "broker.log")
    except ServiceError as e:
        pytest.fail(str(e))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings pointing at the session broker, with topics and group unique to this test."""
    suffix = uuid.uuid4().hex[:10]
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        events_topic=f"ddso.events.{suffix}",
        dead_letter_topic=f"ddso.events.dlq.{suffix}",
        decisions_topic=f"ddso.decisions.{suffix}",
        group_id=f"ddso-stream-{suffix}",
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the Redis at 127.0.0.1:6379; fails the test clearly if none answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as e:
        pytest.fail(f"no Redis answers at {REDIS_URL} ({e}); this machine kind runs one, and "
                    "`.ci/run` starts one (`redis-server --daemonize yes`) if none answers")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    return f"ddso-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis_settings(redis_url: str, redis_prefix: str) -> RedisSettings:
    """Settings for the test Redis, writing under :func:`redis_prefix`."""
    return RedisSettings(url=redis_url, key_prefix=redis_prefix)


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """UNLINK every key starting with ``prefix`` (SCAN, never KEYS); return how many."""
    pattern = re.sub(r"([\\*?\[\]])", r"\\\1", prefix) + "*"  # the prefix matches literally
    deleted = 0
    batch: list[bytes] = []
    for name in client.scan_iter(match=pattern, count=1000):
        batch.append(name)
        if len(batch) >= 1000:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted


@pytest.fixture
def redis_client(redis_settings: RedisSettings) -> Iterator[redis.Redis]:
    """A client for the test Redis; keys under the test's prefix are removed afterwards."""
    client = make_redis(redis_settings)
    try:
        yield client
    finally:
        delete_prefix(client, redis_settings.key_prefix)
        client.close()
