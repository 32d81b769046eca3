"""``ddso data describe``: sizes, date range and funnel rates of a generated dataset.

Everything is counted from the files themselves (row counts from Parquet metadata, the
funnel from the event stream), so the report checks the generator rather than echoing it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ddso.data.dataset import Dataset, part_files, read_parquet
from ddso.errors import DataFileError
from ddso.schemas.warehouse import WAREHOUSE_TABLES

SEED_TARGETS = {"conversion_rate": 0.009, "graduation_rate": 0.0069}
"""The DDSO seed's "before" figures the generator is calibrated to."""

STAGE_EVENTS = {
    "contacted": ("offer_shown",),
    "enrolled": ("enrollment",),
    "active": ("program_payment",),
    "graduated": ("graduation",),
    "dropped": ("dropout",),
    "churned": ("churn",),
}
"""The event types that put a customer in each funnel stage (every customer is a lead)."""
_CRM = ("crm_call", "crm_email", "crm_meeting")


def _rows(path: Path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException) as err:
        raise DataFileError(f"{path}: not a readable Parquet file ({err})") from None


def funnel_rates(funnel: dict[str, int]) -> dict[str, float]:
    """Conversion (enrolled / leads) and graduation (graduated / leads), as the seed counts
    them; 0 without leads."""
    leads = funnel["leads"]
    return {"conversion_rate": funnel["enrolled"] / leads if leads else 0.0,
            "graduation_rate": funnel["graduated"] / leads if leads else 0.0}


def describe(path: Path) -> dict:
    """Count a dataset's tables, events and funnel; raise DataFileError naming a bad file."""
    ds = Dataset(path)
    tables = {name: sum(_rows(f) for f in part_files(ds.path / "warehouse" / name))
              for name in WAREHOUSE_TABLES}
    by_type: dict[str, int] = {}
    who: dict[str, list[pa.Array]] = {stage: [] for stage in [*STAGE_EVENTS, "qualified"]}
    first, last = None, None
    for f in ds.event_files():
        ev = read_parquet(f, columns=["type", "customer_id", "event_time", "outcome"])
        for row in pc.value_counts(ev["type"]).to_pylist():
            by_type[row["values"]] = by_type.get(row["values"], 0) + row["counts"]
        if ev.num_rows:
            lo, hi = pc.min_max(ev["event_time"]).values()
            first = lo if first is None or lo.value < first.value else first
            last = hi if last is None or hi.value > last.value else last
        for stage, types in STAGE_EVENTS.items():
            who[stage].append(ev.filter(pc.is_in(ev["type"], pa.array(types)))["customer_id"]
                              .combine_chunks())
        positive = pc.and_(pc.is_in(ev["type"], pa.array(_CRM)),
                           pc.equal(ev["outcome"], "positive"))
        qualified = pc.or_(pc.fill_null(positive, False), pc.equal(ev["type"], "offer_accepted"))
        who["qualified"].append(ev.filter(qualified)["customer_id"].combine_chunks())
    leads = tables["customers"]
    funnel = {"leads": leads}
    for stage in ("contacted", "qualified", "enrolled", "active", "graduated", "dropped",
                  "churned"):
        ids = pa.concat_arrays(who[stage]) if who[stage] else pa.array([], pa.string())
        funnel[stage] = len(pc.unique(ids))
    funnel.update(funnel_rates(funnel))
    m = ds.manifest
    return {
        "path": str(ds.path),
        "seed": m.get("seed"),
        "customers": leads,
        "window": {"start": m.get("start"), "end": m.get("end"), "days": m.get("days")},
        "event_time_range": {"first": first.as_py().isoformat() if first else None,
                             "last": last.as_py().isoformat() if last else None},
        "tables": tables,
        "events": sum(by_type.values()),
        "events_by_type": dict(sorted(by_type.items())),
        "funnel": funnel,
        "targets": dict(SEED_TARGETS),
    }


def format_description(report: dict) -> str:
    """The report as a readable text table."""
    lines = [f"dataset {report['path']}  (seed {report['seed']}, {report['customers']:,} "
             f"customers)",
             f"window  {report['window']['start']} .. {report['window']['end']} "
             f"({report['window']['days']} days); events "
             f"{report['event_time_range']['first']} .. {report['event_time_range']['last']}",
             "", "tables"]
    lines += [f"  {name:<20} {n:>14,}" for name, n in report["tables"].items()]
    lines += ["", f"events {report['events']:,}"]
    lines += [f"  {name:<20} {n:>14,}" for name, n in report["events_by_type"].items()]
    f = report["funnel"]
    lines += ["", "funnel"]
    lines += [f"  {stage:<20} {f[stage]:>14,}  {f[stage] / f['leads'] if f['leads'] else 0:8.2%}"
              for stage in ("leads", "contacted", "qualified", "enrolled", "active", "graduated",
                            "dropped", "churned")]
    for rate in ("conversion_rate", "graduation_rate"):
        lines.append(f"  {rate:<20} {f[rate]:>14.4%}  (seed target {report['targets'][rate]:.2%})")
    return "\n".join(lines)
