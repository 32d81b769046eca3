"""``ddso bench serve``: /v1/decide under open-loop load, on Serve and in one plain process.

Builds what ``ddso up`` builds on a small generated dataset (features snapshot, a Ray-trained
propensity model, an API key) plus an engagement policy of the training job's shape (random
weights: the same serving cost as a trained one; ``policy=0`` leaves it out), then, with the
load generator of :mod:`benchmarks.loadgen` running as a separate process for each
measurement:

- ``r{RATE}_achieved_rps`` / ``r{RATE}_p50_ms`` / ``r{RATE}_p99_ms`` /
  ``r{RATE}_error_rate`` (non-200 answers and unanswered requests over all offered) for each
  offered rate (``rates``, default 50,100,200,300,400,500 requests/s) against the Serve app
  of :func:`serve_deployments.app.build_app`, with the Serve settings ddso runs with
  (:data:`ddso.runtime.SERVE_ENV`). ``bend_rps``: the highest rate whose p99 stayed within
  30 ms with no errors (0 if none did).
- ``plain_p50_ms`` / ``plain_p99_ms`` / ``plain_error_rate``: the same app over the same
  service (:mod:`serve_deployments.plain`) in one uvicorn process without Serve, at
  ``plain_rate`` (100) requests/s; ``serve_vs_plain_p50`` / ``serve_vs_plain_p99``: the
  Serve figures at that rate over these (target: <= 2).
- ``logic_p50_us`` / ``logic_p99_us``: the decision logic alone (feature lookup, scoring
  with reason codes, the policy, :func:`ddso.policy.decide.decide`, the audit record) called in this
  process, no HTTP.
- Recommendations, ``GET /v1/customers/{id}/recommendations?k=10`` served by the app's
  ``recommender`` (option ``recommender``: popularity, the default, or hybrid; option
  ``deep``: e.g. ``wide_deep`` or ``wide_deep,ncf``, trained and promoted by
  ``pipelines.train_recommenders`` on the same data and blended into the hybrid):
  ``recommender`` (what answered, e.g. ``hybrid+wide_deep:v1``), ``rec_logic_p50_us`` /
  ``rec_logic_p99_us`` (the service method in this process) and ``rec_r{RATE}_p50_ms`` /
  ``_p99_ms`` / ``_error_rate`` on Serve for each of ``rec_rates`` (default 50,100).

The API key's rate limit is raised for the run (the default, 400/s per key, would answer
429 at 500/s: correct behaviour, but not what this measures). Each measurement runs
``warmup`` seconds not counted, then ``seconds`` counted.

Options: customers (2000), days (120), rates, seconds (10), warmup (2), plain_rate (100),
logic_calls (2000), policy (1), recommender (popularity), deep (none), deep_workers (1: Ray
Train workers of the deep fits; 0 fits in this process), rec_rates (50,100).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from serve_deployments.plain import free_port, subprocess_server

P99_TARGET_MS = 30.0


def _logic_latencies(args: dict[str, Any], customers: list[str],
                     calls: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Microseconds per :meth:`DecisionService.decide` (what ``POST /v1/decide`` runs after
    authentication and parsing: lookup, scoring, policy, decision, audit, the answer's body)
    and per :meth:`DecisionService.recommendations` (k=10), called in this process; the
    label of the recommender that answered."""
    from serve_deployments.schemas import DecideRequest
    from serve_deployments.service import (
        AppArgs,
        AssessmentClient,
        AssessmentModel,
        DecisionService,
    )

    a = AppArgs.model_validate(args)
    service = DecisionService(a, AssessmentClient.local(AssessmentModel(a.registry, a.products)))
    assert service.scorer is not None
    decide, recommend = np.empty(calls), np.empty(calls)
    try:
        for i in range(calls):
            cid = customers[i % len(customers)]
            t0 = time.perf_counter()
            service.decide(DecideRequest(customer_id=cid))
            t1 = time.perf_counter()
            service.recommendations(cid, 10)
            recommend[i] = (time.perf_counter() - t1) * 1e6
            decide[i] = (t1 - t0) * 1e6
        label = service.recommender.current.label
    finally:
        service.close()
    return decide, recommend, label


def _load(url: str, token: str, customers_file: Path, rate: float, seconds: float,
          warmup: float, recommendations: bool = False) -> dict[str, Any]:
    """Run the load generator as its own process; its figures."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", url, token, str(customers_file),
           "--rate", str(rate), "--seconds", str(seconds), "--warmup", str(warmup)]
    if recommendations:
        cmd += ["--recommendations", "10"]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True,
                          timeout=warmup + seconds + 90)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["error_rate"] = round(
        (result["errors"] + result["unanswered"]) / max(result["requests"], 1), 4)
    print(f"bench serve: {url} at {rate:g}/s -> {result}", file=sys.stderr, flush=True)
    return result


def _plain(args: dict[str, Any], token: str, customers_file: Path, rate: float,
           seconds: float, warmup: float) -> dict[str, Any]:
    with subprocess_server(args) as url:
        return _load(url, token, customers_file, rate, seconds, warmup)


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    customers = int(options.get("customers", 2000))
    days = int(options.get("days", 120))
    rates = [float(r) for r in options.get("rates", "50,100,200,300,400,500").split(",")]
    seconds = float(options.get("seconds", 10))
    warmup = float(options.get("warmup", 2))
    plain_rate = float(options.get("plain_rate", 100))
    logic_calls = int(options.get("logic_calls", 2000))
    recommender = options.get("recommender", "popularity")
    deep = [d for d in options.get("deep", "").split(",") if d]
    rec_rates = [float(r) for r in options.get("rec_rates", "50,100").split(",")]

    from ddso.runtime import SERVE_ENV, apply_serve_env

    apply_serve_env()  # before Ray starts: the settings ddso serves with

    import pandas as pd
    from ray import serve

    from ddso.config import load_settings
    from ddso.data.generator import GeneratorConfig, generate
    from ddso.runtime import init_ray
    from ddso.security.keys import ApiKeyStore, FileKeyBackend
    from pipelines import train_propensity
    from pipelines.up import build_snapshot, propensity_horizon
    from serve_deployments.app import build_app

    metrics: dict[str, float | int | str] = {"benchmark": "serve", "customers": customers,
                                             "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        overrides = {"home": str(home),
                     "security": {"rate_limit_per_s": 1e6, "rate_limit_burst": 1_000_000}}
        settings = load_settings(**overrides)
        data = home / "data"
        generate(GeneratorConfig(customers=customers, days=days, seed=7), data, progress=False)
        init_ray(settings)
        snapshot = build_snapshot(settings, data)
        registry = str(home / "registry")
        train_propensity.main(train_propensity.Args(
            data=str(data), registry=registry, storage=str(home / "ray_results"),
            horizon_days=propensity_horizon(days)))
        products = data / "warehouse" / "products"
        if options.get("policy", "1") == "1":
            from ddso.models.registry import ModelRegistry
            from rl_env.serving import register_untrained

            table = pd.read_parquet(products, columns=["product_id", "program_kind"])
            programs = sorted(table.loc[table["program_kind"].notna(), "product_id"])
            register_untrained(ModelRegistry(registry), programs, home)
        if deep:
            from pipelines import train_recommenders

            train_recommenders.main(train_recommenders.Args(
                data=str(data), registry=registry, storage=str(home / "ray_results"),
                test_days=min(30, days // 4), num_workers=int(options.get("deep_workers", 1))))
        args = {"registry": registry, "features": str(snapshot), "products": str(products),
                "settings": overrides, "recommender": recommender, "deep_recommenders": deep}
        ids = pd.read_parquet(snapshot, columns=["customer_id"])["customer_id"].tolist()
        customers_file = Path(tmp) / "customers.txt"
        customers_file.write_text("\n".join(ids))
        _, token = ApiKeyStore(FileKeyBackend(settings.api_keys_path()),
                               settings.api_key_hash_key_bytes()).create_key({"decide"})

        logic, rec_logic, metrics["recommender"] = _logic_latencies(args, ids, logic_calls)
        for key, values in (("logic", logic), ("rec_logic", rec_logic)):
            metrics[f"{key}_p50_us"] = round(float(np.percentile(values, 50)), 1)
            metrics[f"{key}_p99_us"] = round(float(np.percentile(values, 99)), 1)

        plain = _plain(args, token, customers_file, plain_rate, seconds, warmup)
        metrics.update({"plain_rate": plain_rate, "plain_achieved_rps": plain["achieved_rps"],
                        "plain_p50_ms": plain["p50_ms"], "plain_p99_ms": plain["p99_ms"],
                        "plain_error_rate": plain["error_rate"]})

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name="ddso-bench", route_prefix="/")
        bend = 0.0
        try:
            for rate in rates:
                r = _load(f"http://127.0.0.1:{port}", token, customers_file, rate, seconds,
                          warmup)
                key = f"r{rate:g}"
                metrics.update({f"{key}_achieved_rps": r["achieved_rps"],
                                f"{key}_p50_ms": r["p50_ms"], f"{key}_p99_ms": r["p99_ms"],
                                f"{key}_error_rate": r["error_rate"]})
                if r["error_rate"] == 0 and r["p99_ms"] <= P99_TARGET_MS:
                    bend = max(bend, rate)
                if rate == plain_rate:
                    metrics["serve_vs_plain_p50"] = round(r["p50_ms"] / plain["p50_ms"], 2)
                    metrics["serve_vs_plain_p99"] = round(r["p99_ms"] / plain["p99_ms"], 2)
            for rate in rec_rates:
                r = _load(f"http://127.0.0.1:{port}", token, customers_file, rate, seconds,
                          warmup, recommendations=True)
                metrics.update({f"rec_r{rate:g}_p50_ms": r["p50_ms"],
                                f"rec_r{rate:g}_p99_ms": r["p99_ms"],
                                f"rec_r{rate:g}_error_rate": r["error_rate"]})
        finally:
            serve.delete("ddso-bench")
            serve.shutdown()
        metrics["bend_rps"] = bend
    metrics["serve_settings"] = ",".join(f"{k}={os.environ.get(k)}" for k in sorted(SERVE_ENV))
    return metrics
