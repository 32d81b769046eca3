"""``ddso bench serve``: /v1/decide under open-loop load, against the same logic in one process.

Builds what ``ddso up`` builds on a small generated dataset (features snapshot, a Ray-trained
propensity model, the Serve app with an API key), then:

- ``plain_p50_us`` / ``plain_p99_us``: the decision logic the ingress runs (feature lookup,
  scoring with reason codes, :func:`ddso.policy.decide.decide`, the audit record) called in
  this process, one request at a time: the "same logic in one plain process" of the target.
- ``serve_p50_ms`` / ``serve_p99_ms`` / ``serve_errors`` (non-200 answers, with the 429 and
  503 counts) / ``serve_unanswered``: open-loop HTTP load at ``rate``
  requests/s for ``seconds`` (after ``warmup`` seconds not counted) from this process: each
  request is sent at its scheduled time whether or not earlier ones have answered, so
  queueing shows in the latency instead of slowing the offered rate. Latency is measured from
  the scheduled send time. ``serve_achieved_rps`` is answers per second.
- ``serve_vs_plain_p50``: how many times the plain p50 the served p50 is (target: <= 2).

Serve runs with the settings DESIGN.md measured as best here (throughput-optimised, gRPC
between deployments, the router in its own loop), set before Ray starts unless already set.

Options: customers (2000), days (120), rate (300), seconds (20), warmup (3), plain_calls (2000).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

_SERVE_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plain_latencies(snapshot: Path, registry: str, products: str, customers: list[str],
                     calls: int, home: Path) -> np.ndarray:
    """Microseconds per decision through the ingress's own functions, in this process."""
    from ddso.audit import make_record, offers_json
    from ddso.config import load_settings
    from ddso.models.registry import ModelRegistry
    from ddso.policy.decide import PropensityScorer, decide
    from ddso.stores.online import LiveFeatures, SnapshotStore
    from serve_deployments.app import PROPENSITY_MODEL, _load_offers, _programs, customer_inputs

    store = LiveFeatures(SnapshotStore.from_parquet(snapshot))
    scorer = PropensityScorer(ModelRegistry(registry).champion(PROPENSITY_MODEL))
    offers = _load_offers(_programs(products))
    catalogue = offers_json(offers)
    pii_key = load_settings(home=home).pii_key_bytes()
    out = np.empty(calls)
    for i in range(calls):
        cid = customers[i % len(customers)]
        t0 = time.perf_counter()
        features, facts, cold, _ = customer_inputs(store, cid, 2025)
        scores = scorer.score(features)
        d = decide(str(uuid.uuid4()), features, facts, scores, offers, epsilon=0.05,
                   versions={"propensity": scores["model_version"]})
        make_record(d, customer_id=cid, pii_key=pii_key, request={}, features=features,
                    facts=facts, offers_json=catalogue, cold_start=cold)
        out[i] = (time.perf_counter() - t0) * 1e6
    return out


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   raw: bytes) -> int:
    """One HTTP/1.1 request on a kept-alive connection; the status code."""
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _open_loop(url: str, token: str, customers: list[str], rate: float, seconds: float,
                     warmup: float, connections: int = 64) -> dict[str, float | int]:
    """Offer ``rate`` requests/s for ``warmup + seconds`` over kept-alive connections.

    Request ``i`` is due at ``start + i / rate``; a free connection sends it as soon as it is
    due, and its latency counts from the due time, so a slow server shows as latency (no
    coordinated omission) while the client stays cheap: raw HTTP/1.1 on ``connections``
    sockets, about a tenth of httpx's cost per request, which could not offer 300/s here.
    Requests still unsent or unanswered 30 s after the last one was due are ``unanswered``.
    """
    host, port = url.removeprefix("http://").split(":")
    total = int((warmup + seconds) * rate)
    bodies = [f'{{"customer_id":"{c}"}}'.encode() for c in customers]
    raws = [
        (f"POST /v1/decide HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
         f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b
        for b in bodies
    ]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0
    start = time.perf_counter() + 0.5

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while next_index < total:
                i = next_index
                next_index += 1
                due = start + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                try:
                    status = str(await _request(reader, writer, raws[i % len(raws)]))
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    status = type(e).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                if due - start >= warmup:
                    latencies.append(time.perf_counter() - due)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(connections)]
    _, pending = await asyncio.wait(tasks, timeout=warmup + seconds + 30.5)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start - warmup
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    measured = int(seconds * rate)
    ok = statuses.get("200", 0)
    return {
        "serve_requests": measured,
        "serve_ok": ok,
        "serve_errors": len(latencies) - ok,
        "serve_unanswered": measured - len(latencies),
        "serve_status_429": statuses.get("429", 0),
        "serve_status_503": statuses.get("503", 0),
        "serve_achieved_rps": round(ok / max(elapsed, 1e-9), 1),
        "serve_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "serve_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "serve_max_ms": round(float(ms.max()), 2),
    }


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    customers = int(options.get("customers", 2000))
    days = int(options.get("days", 120))
    rate = float(options.get("rate", 300))
    seconds = float(options.get("seconds", 20))
    warmup = float(options.get("warmup", 3))
    plain_calls = int(options.get("plain_calls", 2000))
    for name, value in _SERVE_ENV.items():
        os.environ.setdefault(name, value)

    import pandas as pd
    from ray import serve

    from ddso.config import load_settings
    from ddso.data.generator import GeneratorConfig, generate
    from ddso.runtime import init_ray
    from ddso.security.keys import ApiKeyStore, FileKeyBackend
    from pipelines import train_propensity
    from pipelines.up import build_snapshot, propensity_horizon
    from serve_deployments.app import build_app

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = load_settings(home=home)
        data = home / "data"
        generate(GeneratorConfig(customers=customers, days=days, seed=7), data, progress=False)
        init_ray(settings)
        snapshot = build_snapshot(settings, data)
        registry = str(home / "registry")
        train_propensity.main(train_propensity.Args(
            data=str(data), registry=registry, storage=str(home / "ray_results"),
            horizon_days=propensity_horizon(days)))
        products = str(data / "warehouse" / "products")
        ids = pd.read_parquet(snapshot, columns=["customer_id"])["customer_id"].tolist()

        plain = _plain_latencies(snapshot, registry, products, ids, plain_calls, home)

        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({"registry": registry, "features": str(snapshot),
                             "products": products, "settings": {"home": str(home)}}),
                  name="ddso-bench", route_prefix="/")
        _, token = ApiKeyStore(FileKeyBackend(settings.api_keys_path()),
                               settings.api_key_hash_key_bytes()).create_key({"decide"})
        try:
            served = asyncio.run(
                _open_loop(f"http://127.0.0.1:{port}", token, ids, rate, seconds, warmup))
            print(f"bench serve: load done {served}", file=sys.stderr, flush=True)
        finally:
            serve.delete("ddso-bench")
            serve.shutdown()
    plain_p50 = float(np.percentile(plain, 50))
    return {
        "benchmark": "serve",
        "customers": customers,
        "rate_offered": rate,
        "seconds": seconds,
        **served,
        "plain_p50_us": round(plain_p50, 1),
        "plain_p99_us": round(float(np.percentile(plain, 99)), 1),
        "serve_vs_plain_p50": round(served["serve_p50_ms"] * 1e3 / plain_p50, 1),
    }
