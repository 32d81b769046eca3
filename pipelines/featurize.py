"""Batch featurization with Ray Data: events + financial profiles -> customer features as of T.

Reads the event stream (Parquet) and the FinancialProfile table of a dataset, runs the pure
feature functions of :mod:`ddso.features` over Ray Data batches, and writes one row per
customer to the offline store as ``<out>/features_<as_of>.parquet``.

    python -m pipelines.featurize --data .ddso/data --out .ddso/offline
    ray job submit --working-dir . -- python -m pipelines.featurize --data s3://... --out s3://...
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ddso.config import load_settings
from ddso.features import affinity, behaviour, enrichment, financial
from ddso.features.sets import CUSTOMER_FEATURES, FEATURE_SET_VERSION, cold_start_features
from ddso.runtime import init_ray
from pipelines._cli import parse_args

# Only what the feature functions read: the flat event table has many more columns.
EVENT_COLUMNS = ["customer_id", "type", "event_time", "lines"]


@dataclass
class Args:
    data: str
    """Dataset folder written by `ddso data generate` (events/ and warehouse/ inside)."""
    out: str
    """Offline-store folder the feature snapshot is written to."""
    as_of: str | None = None
    """Feature time, ISO-8601 UTC; default: the end of the dataset's observation window."""


def behaviour_features(events_path: str, as_of: datetime) -> pd.DataFrame:
    """Ray Data plan: event rows -> per-customer sums/max/min -> features (pure functions)."""
    import ray
    import ray.data
    from ray.data.aggregate import Max, Min, Sum

    ds = ray.data.read_parquet(events_path, columns=EVENT_COLUMNS)
    rows = ds.map_batches(
        behaviour.event_window_rows, fn_kwargs={"as_of": as_of}, batch_format="pyarrow"
    )
    # Ray Data's default of 200 shuffle partitions costs seconds of scheduling per stage on a
    # small cluster; one partition per CPU keeps every core busy.
    partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
    aggregated = rows.groupby("customer_id", num_partitions=partitions).aggregate(
        *(Sum(c, alias_name=c) for c in behaviour.SUM_COLUMNS),
        *(Max(c, alias_name=c) for c in behaviour.MAX_COLUMNS),
        *(Min(c, alias_name=c) for c in behaviour.MIN_COLUMNS),
    )
    features = aggregated.map_batches(
        behaviour.finalize, fn_kwargs={"as_of": as_of}, batch_format="pandas"
    )
    return features.to_pandas()


def financial_table(profiles_path: str) -> pd.DataFrame:
    import ray.data

    return (
        ray.data.read_parquet(profiles_path)
        .map_batches(financial.financial_features, batch_format="pyarrow")
        .to_pandas()
    )


def observation_end(data_dir: str | Path) -> datetime:
    """The end of the dataset's observation window.

    A generated dataset records it in ``manifest.json`` (its program journeys are followed to
    completion, so lifecycle events run past the window); otherwise the newest event time.
    """
    manifest = Path(data_dir) / "manifest.json"
    if manifest.exists():
        end = json.loads(manifest.read_text()).get("end")
        if end:
            return datetime.fromisoformat(end).replace(tzinfo=UTC)
    table = pq.read_table(Path(data_dir) / "events", columns=["event_time"])
    return pc.max(table["event_time"]).as_py().astimezone(UTC)


def customer_features(data_dir: str | Path, as_of: datetime) -> pd.DataFrame:
    """Every customer of the dataset with behavioural and financial features as of ``as_of``.

    Customers with a profile but no events before ``as_of`` get cold-start behaviour values.
    The model features (``CUSTOMER_FEATURES``) come first; the enrichment joins (market data
    by city and week, GA4 session signals) and the category affinities follow for the served
    profile.
    """
    data_dir = Path(data_dir)
    behav = behaviour_features(str(data_dir / "events"), as_of)
    fin = financial_table(str(data_dir / "warehouse" / "financial_profiles"))
    merged = fin.merge(behav, on="customer_id", how="outer")
    defaults = cold_start_features()
    for col in CUSTOMER_FEATURES:
        merged[col] = merged[col].fillna(defaults[col]).astype("float64")
    merged = merged[["customer_id", *CUSTOMER_FEATURES]]
    extra = enrichment.enrichment_features(data_dir / "warehouse", as_of)
    merged = merged.merge(extra, on="customer_id", how="left")
    merged[list(enrichment.FEATURE_COLUMNS)] = merged[list(enrichment.FEATURE_COLUMNS)].fillna(0.0)
    merged = merged.merge(
        affinity.affinity_features(data_dir / "warehouse", as_of), on="customer_id", how="left"
    )
    merged[list(affinity.NUMERIC_COLUMNS)] = merged[list(affinity.NUMERIC_COLUMNS)].fillna(0.0)
    merged[list(affinity.LABEL_COLUMNS)] = merged[list(affinity.LABEL_COLUMNS)].fillna("")
    return merged.sort_values("customer_id", ignore_index=True)


def snapshot_path(out: str | Path, as_of: datetime) -> Path:
    stamp = as_of.strftime("%Y%m%dT%H%M%SZ")
    return Path(out) / f"features_v{FEATURE_SET_VERSION}_{stamp}.parquet"


def main(args: Args) -> Path:
    init_ray(load_settings())
    as_of = (
        datetime.fromisoformat(args.as_of).astimezone(UTC)
        if args.as_of
        else observation_end(args.data)
    )
    features = customer_features(args.data, as_of)
    path = snapshot_path(args.out, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(path, index=False)
    print(f"featurize: {len(features)} customers as of {as_of.isoformat()} -> {path}")
    return path


if __name__ == "__main__":
    main(parse_args(Args))
