"""The main job: generate data, featurize with Ray Data, train with Ray Train, serve with Ray Serve.

On the embedded default it needs nothing but this machine: local Ray, files under
``<home>`` (``.ddso/`` by default), an in-process online store. It prints each stage, then
sends a few ``POST /v1/decide`` requests, prints the decisions and the URL, and keeps serving
until interrupted (``once=True`` stops after the requests).

    ddso up [--once] [--customers N] [--days D]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from ddso.config import Settings, load_settings
from ddso.runtime import init_ray
from pipelines._cli import parse_args

CUSTOMER_ATTRIBUTES = [
    "customer_id",
    "birth_year",
    "preferred_channel",
    "consent_email",
    "consent_sms",
    "consent_call",
    "consent_app_push",
]


@dataclass
class Args:
    config: str | None = None
    """YAML settings file (default: $DDSO_CONFIG, if set)."""
    customers: int = 5000
    """Customers in the generated dataset."""
    days: int = 120
    """Days of generated activity."""
    seed: int = 7
    """Generator seed."""
    requests: int = 5
    """Sample decisions to request once serving."""
    once: bool = False
    """Exit after the sample requests instead of serving until interrupted."""
    port: int | None = None
    """HTTP port (default: serve.port of the settings)."""


def _stage(n: int, text: str) -> float:
    print(f"[{n}/5] {text}", flush=True)
    return time.perf_counter()


def _done(t0: float, detail: str) -> None:
    print(f"      done in {time.perf_counter() - t0:.1f}s: {detail}", flush=True)


def prepare_data(settings: Settings, args: Args) -> Path:
    from ddso.data.generator import GeneratorConfig, generate

    out = settings.home / "data" / f"c{args.customers}-d{args.days}-s{args.seed}"
    if (out / "manifest.json").exists():
        return out
    generate(
        GeneratorConfig(customers=args.customers, days=args.days, seed=args.seed),
        out,
        progress=True,
    )
    return out


def build_snapshot(settings: Settings, data_dir: Path) -> Path:
    """Features as of the end of the data, joined with the customer facts arbitration needs."""
    from pipelines.featurize import customer_features, observation_end, snapshot_path

    as_of = observation_end(data_dir)
    features = customer_features(data_dir, as_of)
    customers = pd.read_parquet(data_dir / "warehouse" / "customers", columns=CUSTOMER_ATTRIBUTES)
    snapshot = features.merge(customers, on="customer_id", how="left")
    path = snapshot_path(settings.offline_store_path(), as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.to_parquet(path, index=False)
    return path


def send_sample_requests(url: str, customer_ids: list[str], token: str) -> list[dict]:
    decisions = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=30.0, headers=headers) as client:
        for cid in customer_ids:
            r = client.post("/v1/decide", json={"customer_id": cid})
            r.raise_for_status()
            decisions.append(r.json())
    return decisions


def propensity_horizon(days: int) -> int:
    """30 days, or less on a short dataset: three periods (train, valid, test) must fit."""
    from pipelines.train_propensity import Args as TrainArgs

    history = TrainArgs.history_days
    return max(1, min(30, (days - history - 1) // 3))


def main(args: Args) -> int:
    from ray import serve

    from pipelines import train_propensity
    from serve_deployments.app import build_app
    from serve_deployments.security import key_store

    settings = load_settings(args.config)
    port = args.port or settings.serve.port
    ray_where = settings.ray.address or "local"
    print(
        f"ddso up: home={settings.home} ray={ray_where} "
        f"events={'kafka' if settings.kafka.bootstrap_servers else 'generated dataset'} "
        f"online store=in-process registry={settings.registry_path()}",
        flush=True,
    )
    t0 = _stage(1, f"generate {args.customers} customers x {args.days} days (seed {args.seed})")
    data_dir = prepare_data(settings, args)
    _done(t0, str(data_dir))

    t0 = _stage(2, "start Ray")
    init_ray(settings)
    _done(t0, "ready")

    t0 = _stage(3, "featurize with Ray Data -> offline store snapshot")
    snapshot = build_snapshot(settings, data_dir)
    _done(t0, str(snapshot))

    t0 = _stage(4, "train the propensity model with Ray Train XGBoost -> registry")
    version = train_propensity.main(
        train_propensity.Args(
            data=str(data_dir),
            registry=settings.registry_path(),
            storage=str((settings.home / "ray_results").resolve()),
            horizon_days=propensity_horizon(args.days),
        )
    )
    auc = version.metadata["metrics"]["test_auc"]
    _done(t0, f"{version.name}:{version.version} test_auc={auc:.3f} (newest period)")

    t0 = _stage(5, f"deploy the Serve app on http://{settings.serve.host}:{port}")
    serve.start(http_options={"host": settings.serve.host, "port": port})
    serve.run(
        build_app(
            {
                "registry": settings.registry_path(),
                "features": str(snapshot.resolve()),
                "products": str((data_dir / "warehouse" / "products").resolve()),
                "config": str(Path(args.config).resolve()) if args.config else None,
                # The replicas do not share this process's environment or working folder.
                "settings": {"home": str(settings.home.resolve())},
            }
        ),
        name="ddso",
        route_prefix="/",
    )
    url = f"http://{settings.serve.host}:{port}"
    _done(t0, url)

    sample = (
        pd.read_parquet(snapshot, columns=["customer_id"])["customer_id"]
        .head(args.requests)
        .tolist()
    )
    key_id, token = key_store(settings).create_key("decide", name="ddso up sample requests")
    for decision in send_sample_requests(url, sample, token):
        print(json.dumps(decision), flush=True)
    print(
        f"\nserving at {url}  (POST {url}/v1/decide, GET {url}/healthz, docs at {url}/docs)\n"
        f"API key {key_id} (scope decide) was created for the requests above; create your own "
        "with `ddso keys create --scope decide[,ingest,admin]` and send it as "
        "'Authorization: Bearer <token>'",
        flush=True,
    )
    if args.once:
        serve.shutdown()
        return 0
    print("press Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(parse_args(Args)))
