"""Faults under load, on the production configuration (Redis for keys, limits, idempotency and
live features) with a Redis server of the test's own that it can stop and start again:

- a full queue answers 503 with Retry-After, never a 500 or a hang;
- the ingress replica killed under load: every request ends within the client's deadline,
  the errors fall in one bounded window, and a new replica serves after it;
- Redis stopped under load: answers go on, marked degraded, and are whole again once Redis
  is back;
- one idempotency key sent twice at once: one decision, one audit record.

The ingress runs as one replica with a small queue (4 running, 8 waiting) so that overload
is reachable from a test.
"""

import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.dataset as ds
import pytest
import redis

from tests.serve_deployments.conftest import free_port

pytestmark = [pytest.mark.ray, pytest.mark.integration]

DEADLINE_S = 5.0
"""The clients' deadline per request."""
ERROR_WINDOW_S = 20.0
"""Bound on the replica-kill error window: actor death noticed, a replica started (~5 s of
model and snapshot loading here), HAProxy's health check passing again."""


class RedisServer:
    """A redis-server of the test's own, persisted to ``folder`` so a restart keeps the keys."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.proc = folder, free_port(), None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/services.sh installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        redis.Redis(port=self.port).save()  # what a persisted production Redis would keep
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def faulty(serving, tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("faults-redis"))
    server.start()
    try:
        yield from _deploy(tmp_path_factory.mktemp("faults-home"), server, serving)
    finally:
        server.proc.kill()  # also when the deployment failed part-way


def _deploy(home: Path, server: RedisServer, serving):
    """Data, a model, a key and the app on ``server``; yields what the tests use."""
    from ddso.config import load_settings
    from ddso.data.generator import GeneratorConfig, generate
    from pipelines import train_propensity
    from pipelines.up import build_snapshot
    from serve_deployments.app import Assessment, DecisionIngress
    from serve_deployments.security import key_store

    data = home / "data"
    generate(GeneratorConfig(customers=300, days=120, seed=13), data, progress=False)
    overrides = {"home": str(home), "redis": {"url": f"redis://127.0.0.1:{server.port}/0"}}
    settings = load_settings(**overrides)
    snapshot = build_snapshot(settings, data)
    registry = str(home / "registry")
    train_propensity.main(train_propensity.Args(
        data=str(data), registry=registry, storage=str(home / "ray_results")))
    token = key_store(settings).create_key("decide")[1]
    products = str(data / "warehouse" / "products")
    args = {"registry": registry, "features": str(snapshot), "products": products,
            "settings": overrides, "audit_flush_interval_s": 0.2}
    ingress = DecisionIngress.options(num_replicas=1, max_ongoing_requests=4,
                                      max_queued_requests=8)
    app = ingress.bind(Assessment.bind(registry, products), args)
    customers = pd.read_parquet(snapshot, columns=["customer_id"])["customer_id"].tolist()
    with serving(app, "ddso-faults") as url:
        yield {"url": url, "token": token, "customers": customers, "redis": server,
               "audit": home / "audit"}


def _decide(client: httpx.Client, faulty, i: int, **headers) -> tuple[float, float, object]:
    """(sent at, seconds taken, status code or exception name) of one /v1/decide."""
    sent = time.monotonic()
    try:
        r = client.post("/v1/decide", json={"customer_id": faulty["customers"][i % 300]},
                        headers={"Authorization": f"Bearer {faulty['token']}", **headers})
        outcome: object = r
    except httpx.HTTPError as e:
        outcome = type(e).__name__
    return sent, time.monotonic() - sent, outcome


class Load:
    """``rate`` requests/s from a thread pool until stopped; every outcome kept in order."""

    def __init__(self, faulty, rate: float = 20.0):
        self.faulty, self.rate = faulty, rate
        self.results: list[tuple[float, float, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with (httpx.Client(base_url=self.faulty["url"], timeout=DEADLINE_S) as client,
              ThreadPoolExecutor(8) as pool):
            futures, i, start = [], 0, time.monotonic()
            while not self._stop.is_set():
                futures.append(pool.submit(_decide, client, self.faulty, i))
                i += 1
                time.sleep(max(0.0, start + i / self.rate - time.monotonic()))
            self.results = [f.result() for f in futures]

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _status(outcome: object) -> object:
    return outcome.status_code if isinstance(outcome, httpx.Response) else outcome


def _ingress_replica() -> tuple[str, object]:
    import ray

    (name,) = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
               if "ddso-faults#DecisionIngress" in a["name"]]
    return name, ray.get_actor(name, namespace="serve")


def test_a_full_queue_answers_503_with_retry_after(faulty):
    def one(i: int) -> httpx.Response:
        with httpx.Client(base_url=faulty["url"], timeout=DEADLINE_S) as c:
            return c.post("/v1/decide", json={"customer_id": faulty["customers"][i]},
                          headers={"Authorization": f"Bearer {faulty['token']}"})

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(128)))
    statuses = [r.status_code for r in answers]
    print(f"overload: {statuses.count(200)} answered, {statuses.count(503)} refused")
    assert set(statuses) <= {200, 503}
    assert statuses.count(503) > 0 and statuses.count(200) >= 12
    for r in answers:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"


def test_one_idempotency_key_sent_twice_at_once_makes_one_decision(faulty):
    key = f"dup-{time.time_ns()}"
    with (httpx.Client(base_url=faulty["url"], timeout=DEADLINE_S) as client,
          ThreadPoolExecutor(2) as pool):
        a, b = pool.map(lambda _: _decide(client, faulty, 7, **{"Idempotency-Key": key}),
                        range(2))
    first, second = a[2], b[2]
    assert first.status_code == second.status_code == 200
    decision_id = first.json()["decision_id"]
    assert second.json()["decision_id"] == decision_id
    replayed = {first.headers["idempotent-replayed"], second.headers["idempotent-replayed"]}
    assert replayed == {"true", "false"}
    time.sleep(1.0)  # the audit log flushes every 0.2 s
    files = [str(f) for f in Path(faulty["audit"]).glob("audit-*.parquet")]
    table = ds.dataset(files, format="parquet").to_table(
        filter=ds.field("decision_id") == decision_id)
    assert table.num_rows == 1


def test_redis_stopped_under_load_degrades_then_recovers(faulty):
    server = faulty["redis"]
    with Load(faulty) as load:
        time.sleep(2.0)
        server.stop()
        stopped = time.monotonic()
        time.sleep(4.0)
        server.start()
        restarted = time.monotonic()
        time.sleep(3.0)
    statuses = [_status(o) for _, _, o in load.results]
    assert set(statuses) == {200}, f"non-200 answers: {sorted(set(map(str, statuses)))}"
    during = [o.json()["degraded"] for sent, _, o in load.results
              if stopped + 0.5 < sent < restarted - 0.5]
    after = [o.json()["degraded"] for sent, _, o in load.results if sent > restarted + 1.5]
    print(f"redis down: {sum(during)}/{len(during)} degraded; after: {sum(after)}/{len(after)}")
    assert during and all(during)
    assert after and not any(after)


def test_a_killed_ingress_replica_is_replaced_and_errors_stay_in_one_window(faulty):
    import ray

    old_name, old = _ingress_replica()
    with Load(faulty) as load:
        time.sleep(2.0)
        killed = time.monotonic()
        ray.kill(old, no_restart=True)
        time.sleep(ERROR_WINDOW_S + 5.0)
    results = load.results
    assert max(took for _, took, _ in results) <= DEADLINE_S + 1.0  # nothing hung
    failed = [sent for sent, _, o in results if _status(o) != 200]
    statuses = sorted({str(_status(o)) for _, _, o in results})
    window = (max(failed) - min(failed)) if failed else 0.0
    print(f"replica kill: {len(failed)} of {len(results)} failed over {window:.1f} s; "
          f"statuses {statuses}")
    assert window <= ERROR_WINDOW_S
    assert all(_status(o) == 200 for sent, _, o in results if sent > killed + ERROR_WINDOW_S)
    ok_after = [sent for sent, _, o in results if sent > killed and _status(o) == 200]
    assert ok_after, "no answer after the kill"
    new_name, _ = _ingress_replica()
    assert new_name != old_name
