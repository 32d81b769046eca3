"""The stream job against the real broker and Redis, under faults.

- SIGKILL the consumer mid-batch several times while events flow; after a restart the Redis
  state and the offline rows equal those of a run without kills.
- Poison records at random offsets land in the dead-letter sink exactly once; the partitions
  keep flowing and the group's lag returns to 0.
- Replaying the whole topic from offset 0 leaves the online state unchanged.
- Redis unavailable for a while: the job stops committing, backs off, resumes, loses nothing.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from ddso.config import Settings
from ddso.io.publish import dataset_records, publish
from ddso.stores.deadletter import DeadLetterSink
from ddso.stores.offline import OfflineStore
from ddso.stores.online import InMemoryOnlineStore
from ddso.stores.redis_online import RedisOnlineStore
from pipelines.stream import Args, run_consumer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from ddso.data.generator import GeneratorConfig, generate

    out = tmp_path_factory.mktemp("fault-data") / "data"
    generate(GeneratorConfig(customers=1500, days=90, seed=4), out, progress=False)
    recs = [r for batch in dataset_records(out, batch_rows=5000) for r in batch]
    rng = random.Random(9)
    poison = [b"{oops", b'{"type":"view"}', b'{"type":"nope","event_id":"z"}', b"\xff\xfe"]
    for bad in poison:
        recs.insert(rng.randrange(len(recs)), (b"c00000001", bad))
    return recs, len(poison)


def settings_for(kafka_settings, redis_url, prefix, home, group) -> Settings:
    return Settings(
        home=home,
        kafka={**kafka_settings.model_dump(), "group_id": group},
        redis={"url": redis_url, "key_prefix": prefix},
    )


def env_for(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDSO_")}
    env.update(
        DDSO_HOME=str(s.home),
        DDSO_KAFKA__BOOTSTRAP_SERVERS=s.kafka.bootstrap_servers,
        DDSO_KAFKA__EVENTS_TOPIC=s.kafka.events_topic,
        DDSO_KAFKA__GROUP_ID=s.kafka.group_id,
        DDSO_REDIS__URL=s.redis.url,
        DDSO_REDIS__KEY_PREFIX=s.redis.key_prefix,
    )
    return env


def start_consumer(s: Settings) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipelines.stream", "--max-batch", "150", "--idle-exit-s", "4"]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env_for(s), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def offline_files(s: Settings) -> int:
    return sum(1 for _ in (Path(s.offline_store_path()) / "events").rglob("*.parquet"))


def redis_state(client, s: Settings) -> dict:
    store = RedisOnlineStore(client, s.redis.key_prefix)
    customers = sorted(
        k.decode().rsplit(":", 1)[1] for k in client.scan_iter(match=f"{s.redis.key_prefix}state:*")
    )
    return {c: store.state(c) for c in customers}


def end_offsets(s: Settings) -> dict[TopicPartition, int]:
    """Each partition's end, read from the records themselves.

    The test broker (tansu) under-reports ListOffsets(latest) (e.g. 1042 for 1200 records),
    so ``KafkaConsumer.end_offsets`` cannot be trusted here; Apache Kafka reports it exactly.
    """
    consumer = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(s.kafka.events_topic, p)
            for p in consumer.partitions_for_topic(s.kafka.events_topic)
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        ends = dict.fromkeys(parts, 0)
        quiet = 0
        while quiet < 3:
            got = consumer.poll(timeout_ms=300, max_records=10_000)
            quiet = 0 if got else quiet + 1
            for tp, recs in got.items():
                ends[tp] = max(ends[tp], recs[-1].offset + 1)
        return ends
    finally:
        consumer.close()


def lag(s: Settings) -> int:
    """Records of the events topic the group has not committed yet."""
    consumer = KafkaConsumer(
        bootstrap_servers=s.kafka.bootstrap_servers,
        group_id=s.kafka.group_id,
        enable_auto_commit=False,
    )
    try:
        ends = end_offsets(s)
        return sum(end - (consumer.committed(tp) or 0) for tp, end in ends.items())
    finally:
        consumer.close()


def test_kills_replays_and_poison_leave_the_clean_state(
    records, kafka_settings, redis_url, redis_client, redis_prefix, tmp_path
):
    recs, n_poison = records
    killed = settings_for(kafka_settings, redis_url, redis_prefix + "k:", tmp_path / "k", "g-kill")
    clean = settings_for(kafka_settings, redis_url, redis_prefix + "c:", tmp_path / "c", "g-clean")
    publish(killed, [recs[i : i + 5000] for i in range(0, len(recs), 5000)], partitions=3)

    kills = 0
    proc = start_consumer(killed)
    deadline = time.monotonic() + 240
    while kills < 3 and time.monotonic() < deadline:
        files = offline_files(killed)
        if files > 0 and proc.poll() is None:
            time.sleep(random.Random(kills).uniform(0.05, 0.4))
            os.kill(proc.pid, signal.SIGKILL)  # mid-flow: batches half written, uncommitted
            proc.wait()
            kills += 1
            if lag(killed) == 0:
                break
            proc = start_consumer(killed)
            continue
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert kills >= 1, "the consumer finished before it could be killed"
    if proc.poll() is None:
        proc.wait(timeout=240)
    final = start_consumer(killed)  # whatever is left after the last kill
    assert final.wait(timeout=240) == 0

    totals = run_consumer(clean, Args(max_batch=1000, poll_s=0.2, idle_exit_s=4))
    assert totals["received"] == len(recs)
    assert lag(killed) == 0 and lag(clean) == 0

    assert redis_state(redis_client, killed) == redis_state(redis_client, clean)
    rows = {
        name: OfflineStore(s.offline_store_path())
        .read(columns=["event_id"])["event_id"]
        .to_pylist()
        for name, s in (("killed", killed), ("clean", clean))
    }
    assert sorted(rows["killed"]) == sorted(rows["clean"])
    assert len(rows["clean"]) == len(recs) - n_poison
    for s in (killed, clean):
        dead = DeadLetterSink(s.offline_store_path()).read()
        assert dead.num_rows == n_poison

    # Replay the whole topic from offset 0 into the same Redis state: nothing changes.
    before = redis_state(redis_client, clean)
    replay = settings_for(
        kafka_settings, redis_url, redis_prefix + "c:", tmp_path / "c", "g-replay"
    )
    again = run_consumer(replay, Args(max_batch=1000, poll_s=0.2, idle_exit_s=4))
    assert again["received"] == len(recs) and again["applied"] == 0
    assert redis_state(redis_client, clean) == before


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, so it can be frozen without touching anyone else's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    os.kill(proc.pid, signal.SIGCONT)
    proc.terminate()
    proc.wait(timeout=10)


def test_redis_unavailable_for_a_while_loses_nothing(records, kafka_settings, own_redis, tmp_path):
    proc, url = own_redis
    recs, n_poison = records
    s = settings_for(kafka_settings, url, "ddso:", tmp_path / "r", f"g-{uuid.uuid4().hex[:6]}")
    publish(s, [recs[i : i + 5000] for i in range(0, len(recs), 5000)], partitions=3)
    result: dict = {}
    args = Args(max_batch=200, poll_s=0.2, idle_exit_s=6, max_retry_backoff_s=1.0)
    worker = threading.Thread(target=lambda: result.update(run_consumer(s, args)))
    worker.start()
    while offline_files(s) == 0:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGSTOP)  # Redis stops answering; its data stays
    time.sleep(3)
    assert lag(s) > 0  # nothing committed past the failing batch
    os.kill(proc.pid, signal.SIGCONT)
    worker.join(timeout=240)
    assert result["received"] >= len(recs) and lag(s) == 0
    # The state after the outage equals a fault-free run of the same records (in process,
    # where the conformance suite shows the same rules hold).
    clean = InMemoryOnlineStore()
    run_consumer(
        s.model_copy(update={"kafka": s.kafka.model_copy(update={"group_id": "g-ref"})}),
        Args(max_batch=1000, poll_s=0.2, idle_exit_s=4),
        online=clean,
    )
    state = redis_state(redis.Redis.from_url(url), s)
    assert sorted(state) == clean.customers()
    for cid, got in state.items():
        want = clean.state(cid)
        # Redis sums in long double: amounts agree to the last bits, counts exactly.
        assert got.daily.keys() == want.daily.keys(), cid
        for day, sums in got.daily.items():
            assert sums == pytest.approx(want.daily[day], rel=1e-12), (cid, day)
        assert (got.last_event_s, got.last_purchase_s, got.last_contact_s, got.first_event_s) == (
            want.last_event_s,
            want.last_purchase_s,
            want.last_contact_s,
            want.first_event_s,
        )
        assert got.last_values == want.last_values, cid
