"""``ddso data generate``: a seeded, chunked synthetic dataset on the seeds' data model.

Layout of the output directory::

    manifest.json                            seed, sizes, row counts, events by type
    warehouse/<table>/part-NNNNN.parquet     one folder per ddso.schemas.warehouse table
    events/part-NNNNN.parquet                the event stream (flat union of event fields)
    truth/customers/part-NNNNN.parquet       latent drivers, for research and evaluation only

Customers are generated in chunks of ``chunk_size``; chunk ``k`` draws all of its randomness
from ``SeedSequence(seed, spawn_key=(1, k))``, so a dataset is bit-identical for a seed and
memory is bounded by one chunk whatever the number of customers. Program journeys of
customers enrolled in the window are followed to completion, so payment, graduation and
dropout events may lie after ``start + days``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from ddso.data import crm, funnel
from ddso.data import shopping as behaviour
from ddso.data.event_table import EventBuilder
from ddso.data.population import SEGMENTS, Population, draw_population
from ddso.data.tables import build_table
from ddso.data.world import DAY_US, PROGRAM_KINDS, build_world
from ddso.errors import UserError
from ddso.schemas.base import Band, FunnelStage

GENERATOR_VERSION = "1"
_OWN_ENTRIES = ("manifest.json", "warehouse", "events", "truth")


class GeneratorConfig(BaseModel):
    """What to generate. The same config and seed always give byte-identical files."""

    model_config = ConfigDict(extra="forbid")

    customers: int = Field(ge=1, le=100_000_000, description="Number of customers (= leads).")
    days: int = Field(ge=1, le=3650, description="Length of the behaviour window in days.")
    seed: int = Field(0, ge=0, description="Seed of every random draw.")
    start: date = Field(date(2025, 1, 1), description="First day of the window (UTC).")
    chunk_size: int = Field(50_000, ge=1, description="Customers generated and written at once.")


def _write(table: pa.Table, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path.stat().st_size


def _prepare(out: Path) -> None:
    """Make ``out`` ready; replace an earlier dataset but never clobber unrelated files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "manifest.json").exists():
            raise UserError(f"--out {out}: directory is not empty and holds no ddso dataset "
                            "(no manifest.json); choose an empty or new directory")
        for name in _OWN_ENTRIES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _lifecycle(f: funnel.Funnel, churn: crm.Churn, end_us: int) -> pa.Array:
    """Each customer's funnel stage at the end of the window."""
    stages = [FunnelStage.LEAD, FunnelStage.CONTACTED, FunnelStage.QUALIFIED,
              FunnelStage.ENROLLED, FunnelStage.ACTIVE, FunnelStage.GRADUATED,
              FunnelStage.DROPPED, FunnelStage.CHURNED]
    stage = np.zeros(len(churn.time_us), np.int64)
    for i, t in enumerate((f.contacted_us, f.qualified_us, f.enrolled_us, f.active_us,
                           f.graduated_us, f.dropped_us, churn.time_us), start=1):
        stage = np.where(t < end_us, i, stage)
    return pa.array([s.value for s in stages]).take(pa.array(stage))


def _truth(pop: Population, f: funnel.Funnel, churn: crm.Churn) -> pa.Table:
    return pa.table({
        "customer_id": pop.ids,
        "segment": pa.array(SEGMENTS).take(pa.array(pop.segment)),
        "financial_health": pop.health,
        "band": pa.array([b.value for b in Band]).take(pa.array(pop.band)),
        "program_interest": pop.interest,
        "price_sensitivity": pop.price_sensitivity,
        "activity_multiplier": pop.activity,
        "ideal_program_kind": pa.array(PROGRAM_KINDS).take(pa.array(f.ideal_kind)),
        "enroll_probability": f.enroll_probability,
        "churn_probability": churn.probability,
    })


def _chunk(cfg: GeneratorConfig, k: int, world, cal, weeks, out: Path) -> tuple[dict, Counter]:
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, k)))
    first = k * cfg.chunk_size
    n = min(cfg.chunk_size, cfg.customers - first)
    end_us = cal.start_us + cfg.days * DAY_US
    pop = draw_population(rng, world, first, n, cal.start_us, cfg.days, cfg.seed)
    events = EventBuilder(k, world.catalogue.product_ids)
    log = crm.CrmLog(events)
    active_from = np.maximum(pop.created_us, cal.start_us)
    churn, complaints = crm.draw_churn(rng, pop, active_from, end_us, cal.start_us, events)
    fun = funnel.draw_funnel(rng, pop, world.catalogue, active_from, end_us, churn, log)
    crm.finish_churn(churn, events)
    active_to = np.maximum(np.minimum(churn.time_us, end_us), active_from)
    beh = behaviour.draw_sessions(rng, pop, world, cal, active_from, active_to, churn.time_us,
                                  events)
    crm.draw_inbound(rng, pop, active_from, active_to, log)
    n_complaints = np.bincount(complaints[0], minlength=n)
    tables = {
        **beh.tables,
        "customers": build_table("customers", {**pop.columns,
                                               "lifecycle_stage": _lifecycle(fun, churn, end_us)}),
        "financial_profiles": pop.profiles,
        "crm_interactions": log.table(pop.ids, complaints),
        "social_signals": crm.draw_social(rng, pop, weeks, n_complaints),
    }
    part = f"part-{k:05d}.parquet"
    rows = {name: t.num_rows for name, t in tables.items()}
    written = sum(_write(t, out / "warehouse" / name / part) for name, t in tables.items())
    ev = events.finish(pop.ids, beh.lines)
    written += _write(ev, out / "events" / part)
    written += _write(_truth(pop, fun, churn), out / "truth" / "customers" / part)
    by_type = Counter(dict(zip(*np.unique(ev["type"].to_numpy(zero_copy_only=False),
                                          return_counts=True), strict=True)))
    return {"rows": rows, "bytes": written}, by_type


def generate(cfg: GeneratorConfig, out: Path, progress: bool = True) -> dict:
    """Write a dataset for ``cfg`` under ``out``; return its manifest plus timing."""
    try:
        cfg = GeneratorConfig.model_validate(cfg.model_dump())
    except ValidationError as err:
        raise UserError(f"generator config: {err.errors()[0]['msg']}") from None
    began = time.perf_counter()
    _prepare(out)
    start = np.datetime64(cfg.start.isoformat(), "us")
    world = build_world(np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(0,))),
                        start, cfg.days)
    cal = behaviour.Calendar.build(start, cfg.days)
    weeks = world.tables["market_data"]["week_start"].unique().to_numpy(zero_copy_only=False)
    rows: Counter = Counter({name: t.num_rows for name, t in world.tables.items()})
    written = sum(_write(t, out / "warehouse" / name / "part-00000.parquet")
                  for name, t in world.tables.items())
    by_type: Counter = Counter()
    n_chunks = -(-cfg.customers // cfg.chunk_size)
    with tqdm(total=cfg.customers, unit="customer", disable=not progress) as bar:
        for k in range(n_chunks):
            stats, types = _chunk(cfg, k, world, cal, weeks, out)
            rows.update(stats["rows"])
            by_type.update(types)
            written += stats["bytes"]
            bar.update(min(cfg.chunk_size, cfg.customers - k * cfg.chunk_size))
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": cfg.seed,
        "customers": cfg.customers,
        "days": cfg.days,
        "start": cfg.start.isoformat(),
        "end": str(start.astype("datetime64[D]") + cfg.days),
        "chunk_size": cfg.chunk_size,
        "chunks": n_chunks,
        "rows": {name: int(rows[name]) for name in sorted(rows)},
        "events": int(sum(by_type.values())),
        "events_by_type": {t: int(c) for t, c in sorted(by_type.items())},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "out": str(out), "bytes_written": int(written),
            "wall_s": round(time.perf_counter() - began, 3)}
