"""``ddso bench ingest``: the stream job end to end, broker -> online (Redis) + offline store.

Starts a local Kafka-protocol broker (tansu) and uses the Redis at 127.0.0.1:6379 under a
unique key prefix (deleted afterwards). Traffic is synthetic live traffic: a realistic mix of
event types for ``customers`` customers, stamped with the time they are produced.

- Throughput: ``events`` records are produced first, then 1 (and then 2) consumer processes
  drain them; ``events_per_s_1`` / ``events_per_s_2`` = records / busy time (first record to
  last commit, so the group join is not counted), validation, dead-lettering, Redis and
  Parquet writes and offset commits included.
- Freshness: one consumer runs while the producer offers ``rate`` events/s for ``seconds``;
  per record, producer timestamp -> its batch is applied in Redis (readable); p50 and p99.
- Memory: the largest peak RSS of a consumer process.

Options: events (default 200000), customers (20000), rate (10000), seconds (10), batch (5000).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from ddso.config import Settings
from ddso.io.kafka import ensure_topics, make_producer
from ddso.io.local_broker import LocalBroker
from ddso.io.redis import make_redis
from pipelines.stream import Args, run_consumer

_MIX = (
    ("view", 0.45),
    ("click", 0.2),
    ("session_start", 0.12),
    ("cart_add", 0.08),
    ("purchase", 0.05),
    ("crm_email", 0.05),
    ("crm_call", 0.03),
    ("offer_shown", 0.02),
)


def _event(i: int, kind: str, customer: int, now_s: float) -> bytes:
    t = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_s))
        + f".{int(now_s % 1 * 1e6):06d}+00:00"
    )
    head = (
        f'{{"type":"{kind}","event_id":"b{i}","customer_id":"c{customer}",'
        f'"event_time":"{t}","source":"web"'
    )
    body = {
        "view": ',"session_id":"s{c}","product_id":"p{p}","price":19.5',
        "click": ',"session_id":"s{c}","product_id":"p{p}"',
        "session_start": ',"session_id":"s{c}","device":"mobile","traffic_source":"organic"',
        "cart_add": ',"session_id":"s{c}","product_id":"p{p}","quantity":1,"unit_price":19.5',
        "purchase": ',"sale_id":"S{i}","channel":"web","lines":[{{"product_id":"p{p}","quantity":2,'
        '"unit_price":19.5,"discount":0.1}}]',
        "crm_email": ',"interaction_id":"I{i}","outcome":"neutral"',
        "crm_call": ',"interaction_id":"I{i}","outcome":"positive","duration_s":95.0',
        "offer_shown": ',"offer_id":"O{i}","product_id":"p{p}","channel":"email"',
    }[kind].format(c=customer, p=i % 300, i=i)
    return (head + body + "}").encode()


def _traffic(n: int, customers: int, seed: int) -> list[tuple[int, str]]:
    rng = np.random.default_rng(seed)
    kinds = [k for k, _ in _MIX]
    picks = rng.choice(len(kinds), size=n, p=[w for _, w in _MIX])
    # Heavy-tailed activity: a few customers produce much of the traffic.
    who = np.minimum(rng.zipf(1.3, size=n), customers) - 1
    return [(int(c), kinds[k]) for c, k in zip(who, picks, strict=True)]


def _settings(bootstrap: str, home: Path, prefix: str, topic: str) -> Settings:
    return Settings(
        home=home,
        kafka={"bootstrap_servers": bootstrap, "events_topic": topic, "group_id": f"g-{topic}"},
        redis={"url": "redis://127.0.0.1:6379/0", "key_prefix": prefix},
    )


def _produce(s: Settings, traffic: list[tuple[int, str]], rate: float | None = None) -> None:
    producer = make_producer(s.kafka)
    start = time.monotonic()
    for i, (customer, kind) in enumerate(traffic):
        if rate is not None:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        producer.send(
            s.kafka.events_topic,
            key=f"c{customer}".encode(),
            value=_event(i, kind, customer, time.time()),
        )
    producer.flush()
    producer.close()


def _consume(s: Settings, args: Args, index: int, out: mp.Queue) -> None:
    totals = run_consumer(s, args, index)
    totals["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(totals)


def _drain(s: Settings, args: Args, consumers: int) -> list[dict]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_consume, args=(s, args, i, out)) for i in range(consumers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    return results


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    n = int(options.get("events", 200_000))
    customers = int(options.get("customers", 20_000))
    rate = float(options.get("rate", 10_000))
    seconds = float(options.get("seconds", 10))
    batch = int(options.get("batch", 5000))
    prefix = f"ddso-bench:{uuid.uuid4().hex[:8]}:"
    metrics: dict[str, float | int | str] = {"events": n, "customers": customers, "batch": batch}
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker.log") as broker:
        try:
            for consumers in (1, 2):
                s = _settings(
                    broker.bootstrap,
                    Path(tmp) / f"c{consumers}",
                    prefix + f"{consumers}:",
                    f"bench.c{consumers}",
                )
                ensure_topics(s.kafka, {s.kafka.events_topic: 4})
                _produce(s, _traffic(n, customers, seed=consumers))
                # A consumer must outlast the group's rebalances (10-30 s on the test broker)
                # before it calls the topic drained; idle time is not counted as busy time.
                results = _drain(s, Args(max_batch=batch, poll_s=0.5, idle_exit_s=30), consumers)
                received = sum(r["received"] for r in results)
                applied = sum(r["applied"] for r in results)
                # A rebalance redelivers uncommitted records: they are received again, and the
                # online store skips them, so every event is applied exactly once.
                assert applied == n, f"{consumers} consumer(s) applied {applied} of {n}"
                metrics[f"redelivered_{consumers}"] = received - n
                metrics[f"events_per_s_{consumers}"] = round(
                    received / max(r["busy_s"] for r in results)
                )
                metrics[f"peak_rss_mb_{consumers}"] = round(
                    max(r["peak_rss_mb"] for r in results), 1
                )
            metrics["scaling_2_vs_1"] = round(
                metrics["events_per_s_2"] / metrics["events_per_s_1"], 2
            )

            s = _settings(broker.bootstrap, Path(tmp) / "fresh", prefix + "f:", "bench.fresh")
            ensure_topics(s.kafka, {s.kafka.events_topic: 4})
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            consumer = ctx.Process(
                target=_consume, args=(s, Args(max_batch=batch, poll_s=0.05, idle_exit_s=3), 0, out)
            )
            consumer.start()
            time.sleep(8)  # let the consumer join the group before the clock starts
            offered = int(rate * seconds)
            t0 = time.monotonic()
            _produce(s, _traffic(offered, customers, seed=3), rate=rate)
            metrics["offered_rate"] = rate
            metrics["achieved_produce_rate"] = round(offered / (time.monotonic() - t0))
            fresh = out.get(timeout=900)
            consumer.join()
            f = np.asarray(fresh["freshness_ms"])
            metrics["freshness_p50_ms"] = round(float(np.percentile(f, 50)), 1)
            metrics["freshness_p99_ms"] = round(float(np.percentile(f, 99)), 1)
            metrics["freshness_max_ms"] = round(float(f.max()), 1)
            metrics["peak_rss_mb"] = max(
                metrics["peak_rss_mb_1"], metrics["peak_rss_mb_2"], round(fresh["peak_rss_mb"], 1)
            )
        finally:
            client = make_redis(_settings(broker.bootstrap, Path(tmp), prefix, "x").redis)
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.unlink(key)
            client.close()
    return metrics
