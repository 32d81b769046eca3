"""Redis adapters against the real Redis at 127.0.0.1:6379, under a per-test key prefix."""

from __future__ import annotations

import socket
import uuid

import pytest
import redis

from ddso.config import RedisSettings
from ddso.errors import ConfigError, ServiceError
from ddso.io.redis import key, make_redis, ping_or_raise, redact_url
from tests.plugins.services import delete_prefix


@pytest.mark.integration
def test_hash_round_trip_and_pipeline(redis_client: redis.Redis, redis_settings: RedisSettings,
                                      redis_prefix: str) -> None:
    ping_or_raise(redis_client, redis_settings.url or "")
    name = key(redis_prefix, "features", "c:001")
    assert name == f"{redis_prefix}features:c:001"
    redis_client.hset(name, mapping={"spend_30d": b"12.5", "segment": b"\x00\x01"})
    assert redis_client.hgetall(name) == {b"spend_30d": b"12.5", b"segment": b"\x00\x01"}

    pipe = redis_client.pipeline(transaction=False)
    for i in range(200):
        pipe.hset(key(redis_prefix, "features", f"c{i}"), "n", i)
        pipe.expire(key(redis_prefix, "features", f"c{i}"), redis_settings.feature_ttl_s)
    assert all(pipe.execute())
    pipe = redis_client.pipeline(transaction=False)
    for i in range(200):
        pipe.hget(key(redis_prefix, "features", f"c{i}"), "n")
    assert pipe.execute() == [str(i).encode() for i in range(200)]
    assert 0 < redis_client.ttl(key(redis_prefix, "features", "c7")) <= redis_settings.feature_ttl_s


@pytest.mark.integration
def test_delete_prefix_removes_only_its_keys(redis_client: redis.Redis) -> None:
    doomed = f"ddso-test:{uuid.uuid4().hex[:12]}:"
    kept = f"ddso-test:{uuid.uuid4().hex[:12]}:"
    pipe = redis_client.pipeline(transaction=False)
    for i in range(2_500):
        pipe.set(f"{doomed}{i}", b"x")
    pipe.set(f"{kept}survivor", b"y")
    pipe.execute()
    try:
        assert delete_prefix(redis_client, doomed) == 2_500
        assert list(redis_client.scan_iter(match=f"{doomed}*")) == []
        assert redis_client.get(f"{kept}survivor") == b"y"
    finally:
        delete_prefix(redis_client, doomed)
        delete_prefix(redis_client, kept)


@pytest.mark.integration
def test_ping_on_dead_port_names_url_without_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nothing listens once the socket closes
    url = f"redis://ddso:s3cret-pw@127.0.0.1:{port}/0"
    client = make_redis(RedisSettings(url=url, socket_timeout_s=0.2))
    with pytest.raises(ServiceError) as err:
        ping_or_raise(client, url)
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cret-pw" not in message
    assert err.value.__cause__ is None  # no chained exception to leak through a traceback


@pytest.mark.unit
def test_key_redact_and_config() -> None:
    assert key("ddso:", "features", "c1") == "ddso:features:c1"
    with pytest.raises(ValueError, match="only the last part"):
        key("ddso:", "a:b", "c")
    assert redact_url("redis://u:pw@h:6380/1") == "redis://u:***@h:6380/1"
    assert redact_url("redis://:pw@h/0") == "redis://:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    with pytest.raises(ConfigError, match="redis.url is not set"):
        make_redis(RedisSettings())
    with pytest.raises(ConfigError, match=r"\*\*\*") as err:
        make_redis(RedisSettings(url="http://u:pw@h:1/0"))
    assert "pw@" not in str(err.value)

