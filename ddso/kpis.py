"""The dashboard's numbers (``GET /v1/kpis`` and ``/dashboard``): the funnel, conversion and
graduation against the seed's baselines, churn, segment sizes, experiment results, request
latency and data freshness.

Every open dashboard polls these every few seconds, so nothing here rescans history:

- :class:`FunnelCounts` keeps the distinct customers of each funnel stage over the offline
  store. Its files never change once written (a replayed micro-batch rewrites its own file
  with the same rows), so each file is read once, four columns of it; a poll lists the
  ``event_date=`` folders and reads only the files that appeared or changed since. A file
  that disappeared (compaction, a deleted day) starts the counts over.
- :class:`KpiBoard` assembles the answer (:func:`compute_kpis`) and caches it for ``ttl_s``,
  so any number of dashboards cost one refresh per ``ttl_s``.

Stages and rates are those of ``ddso data describe`` (:mod:`ddso.data.describe`): every
customer is a lead (each customer of the feature snapshot, and any customer with an event);
contacted, enrolled, graduated and churned customers have an ``offer_shown``,
``enrollment``, ``graduation`` or ``churn`` event; conversion is enrolled / leads and
graduation is graduated / leads, against the seed's 0.9 % and 0.69 %.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry

from ddso.config import Settings
from ddso.data.describe import SEED_TARGETS, STAGE_EVENTS, funnel_rates
from ddso.errors import UserError
from ddso.experiment_report import ExperimentReport, read_labels, report
from ddso.experiments import active_experiment, read_stopped, state_path
from ddso.stores.online import latest_snapshot
from ddso.stream_health import stream_health

STAGES = ("contacted", "enrolled", "graduated", "churned")
"""The funnel stages the dashboard shows after ``leads`` (the stages of ``describe``)."""
LATENCY_METRIC = "ddso_http_request_seconds"
_COLUMNS = ["customer_id", "type", "event_time", "ingestion_time"]
_DAY_US = 86_400 * 1_000_000
_MAX_SERIES_POINTS = 400
_READ_FILES = 512
"""Files read per scan (bounds memory on a first read of a large store)."""
_RACY_NS = 2_000_000_000
_STREAM_FIELDS = ("stale", "seconds_since_last_batch", "lag_total", "ingestion_delay_p99_s",
                  "dead_letters", "dead_letter_rate", "late")
"""What the dashboard shows of the stream job's health (counts: over its recent window)."""


@dataclass
class _FileCounts:
    rows: int
    newest_event_us: int | None
    newest_ingestion_us: int | None


class FunnelCounts:
    """Distinct customers per funnel stage over an offline store's ``events`` folder, updated
    incrementally: call :meth:`update` before reading."""

    def __init__(self, events_dir: str | Path):
        self.events_dir = Path(events_dir)
        self.generation = 0
        """Moves whenever the counts may have changed."""
        self._reset()

    def _reset(self) -> None:
        self.customers: set[str] = set()
        """Every customer with an event."""
        self.stages: dict[str, set[str]] = {s: set() for s in STAGES}
        self.first_enrolled_day: dict[str, int] = {}
        """Customer -> day (since the epoch, UTC) of their first enrolment."""
        self.unreadable: list[str] = []
        self.events = 0
        self.newest_event_us: int | None = None
        self.newest_ingestion_us: int | None = None
        self._files: dict[str, _FileCounts] = {}
        self._signatures: dict[str, tuple[int, int]] = {}
        self._folders: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {}
        self._listed_ns = 0
        self.generation += 1

    @property
    def files(self) -> int:
        return len(self._files)

    def update(self) -> int:
        """Read the files that appeared or changed since the last call; return how many."""
        listing = self._list()
        if any(path not in listing for path in self._signatures):
            self._reset()  # a file went (compaction, a deleted day): count afresh
            listing = self._list()
        changed = sorted(p for p, sig in listing.items() if self._signatures.get(p) != sig)
        for i in range(0, len(changed), _READ_FILES):
            self._read(changed[i:i + _READ_FILES])
        for path in changed:
            self._signatures[path] = listing[path]
        if changed:
            self.generation += 1
        return len(changed)

    def _list(self) -> dict[str, tuple[int, int]]:
        """Every data file with its (mtime, size). A day folder is only listed again when its
        own mtime moved (a file was renamed into it) or moved so recently that a second change
        within the same clock tick would not show."""
        started = time.time_ns()
        try:
            days = [d for d in os.scandir(self.events_dir)
                    if d.name.startswith("event_date=") and d.is_dir()]
        except FileNotFoundError:
            days = []
        folders = {}
        for day in days:
            mtime = day.stat().st_mtime_ns
            known = self._folders.get(day.path)
            if known is None or known[0] != mtime or mtime >= self._listed_ns - _RACY_NS:
                # Writers write ``.<name>.tmp`` and rename: hidden files are not there yet.
                with os.scandir(day.path) as entries:
                    known = (mtime, {f.path: _signature(f) for f in entries
                                     if f.name.endswith(".parquet") and not f.name.startswith(".")})
            folders[day.path] = known
        self._folders = folders
        self._listed_ns = started
        return {path: sig for _, files in folders.values() for path, sig in files.items()}

    def _read(self, paths: list[str]) -> None:
        try:
            table = pads.dataset(paths, format="parquet").to_table(
                columns=[*_COLUMNS, "__filename"])
        except (OSError, pa.ArrowException):
            if len(paths) > 1:  # find the bad file(s): read one by one
                for path in paths:
                    self._read([path])
                return
            # Never a failed poll for one bad file: it is counted in the answer instead, and
            # read again if it changes.
            self.unreadable.append(paths[0])
            return
        self._add(table)
        per_file = table.group_by("__filename").aggregate(
            [("type", "count"), ("event_time", "max"), ("ingestion_time", "max")])
        counts = {path: _FileCounts(0, None, None) for path in paths}
        for name, rows, event, ingestion in zip(
            *(per_file[c].to_pylist() for c in
              ("__filename", "type_count", "event_time_max", "ingestion_time_max")),
            strict=True,
        ):
            counts[name] = _FileCounts(rows, _us(event), _us(ingestion))
        for path, new in counts.items():
            # A rewritten file holds the same rows again: its old count is replaced.
            self.events += new.rows - (self._files[path].rows if path in self._files else 0)
            self._files[path] = new
            self.newest_event_us = _newest((self.newest_event_us, new.newest_event_us))
            self.newest_ingestion_us = _newest(
                (self.newest_ingestion_us, new.newest_ingestion_us))

    def _add(self, table: pa.Table) -> None:
        ids, types = table["customer_id"], table["type"]
        self.customers.update(pc.unique(ids).to_pylist())
        for stage in STAGES:
            wanted = pc.is_in(types, value_set=pa.array(STAGE_EVENTS[stage]))
            self.stages[stage].update(pc.unique(ids.filter(wanted)).to_pylist())
        enrolled = table.filter(pc.equal(types, "enrollment"))
        if enrolled.num_rows:
            days = enrolled["event_time"].cast(pa.int64()).to_numpy() // _DAY_US
            first = self.first_enrolled_day
            for customer, day in zip(enrolled["customer_id"].to_pylist(), days.tolist(),
                                     strict=True):
                if day < first.get(customer, day + 1):
                    first[customer] = day


def _signature(entry: os.DirEntry) -> tuple[int, int]:
    st = entry.stat()
    return st.st_mtime_ns, st.st_size


def _us(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1_000_000)


def _newest(values) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


@dataclass
class SnapshotCustomers:
    """The customers of the newest feature snapshot and their segment sizes, re-read only
    when a newer snapshot appears (a file or a folder, as ``AppArgs.features``)."""

    features: str | Path | None
    ids: frozenset[str] = frozenset()
    segments: dict[str, int] = field(default_factory=dict)
    has_segments: bool = False
    signature: tuple[str, int] | None = None
    """The snapshot file read and its mtime."""

    def update(self) -> None:
        if self.features is None:
            return
        path = latest_snapshot(self.features)
        signature = (str(path), path.stat().st_mtime_ns)
        if signature == self.signature:
            return
        names = pq.read_schema(path).names
        cols = ["customer_id", *(["segment"] if "segment" in names else [])]
        table = pq.read_table(path, columns=cols)
        self.ids = frozenset(table["customer_id"].to_pylist())
        self.has_segments = "segment" in names
        self.segments = {}
        if self.has_segments:
            counts = pc.value_counts(table["segment"].cast(pa.string())).to_pylist()
            self.segments = {
                ("(none)" if c["values"] is None else c["values"]): c["counts"]
                for c in sorted(counts, key=lambda c: (-c["counts"], str(c["values"])))
            }
        self.signature = signature


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper bound, count), ...]`` (sorted,
    ending at +Inf), interpolated linearly within the bucket as Prometheus does; the highest
    finite bound when it falls in the +Inf bucket; None when empty."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def latency_by_endpoint(registry: CollectorRegistry) -> dict[str, dict[str, float | int]]:
    """Requests, p50 and p99 (ms) per endpoint from the request-latency histogram of
    ``registry`` (this replica, since it started)."""
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in registry.collect():
        if family.name != LATENCY_METRIC:
            continue
        for s in family.samples:
            if s.name == f"{LATENCY_METRIC}_bucket":
                le = float(s.labels["le"])
                buckets.setdefault(s.labels["endpoint"], []).append((le, s.value))
    out: dict[str, dict[str, float | int]] = {}
    for endpoint, b in sorted(buckets.items()):
        b.sort()
        p50, p99 = histogram_quantile(0.5, b), histogram_quantile(0.99, b)
        out[endpoint] = {
            "requests": int(b[-1][1]),
            "p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p99_ms": None if p99 is None else round(p99 * 1000, 2),
        }
    return out


def conversion_series(first_enrolled_day: Mapping[str, int], leads: int) -> list[list]:
    """``[[day, enrolled to date / leads], ...]`` for the days on which someone first enrolled
    (thinned to at most ``_MAX_SERIES_POINTS``, the last day always kept)."""
    if not first_enrolled_day or not leads:
        return []
    days, counts = np.unique(np.fromiter(first_enrolled_day.values(), np.int64),
                             return_counts=True)
    cumulative = np.cumsum(counts)
    keep = np.unique(np.r_[np.linspace(0, len(days) - 1, min(len(days), _MAX_SERIES_POINTS))
                           .round().astype(np.int64), len(days) - 1])
    return [[_day_iso(int(days[i])), round(float(cumulative[i]) / leads, 6)] for i in keep]


def _day_iso(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()


def _iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def _lift(rate: float, baseline: float) -> float:
    return round(rate / baseline - 1.0, 4)


def freshness(funnel: FunnelCounts, stream: Mapping[str, Any], now: float) -> dict[str, Any]:
    """How current the data is: when the offline store's newest event was ingested (and how
    long ago), its newest event time and size; and, when the stream job reports its health
    (:func:`ddso.stream_health.stream_health`), its last batch, lag, ingestion delay and dead
    letters."""
    ingested = funnel.newest_ingestion_us
    return {
        "last_ingested_at": _iso(ingested),
        "last_ingested_age_s": None if ingested is None else round(now - ingested / 1e6, 1),
        "newest_event_time": _iso(funnel.newest_event_us),
        "events": funnel.events,
        "files": funnel.files,
        "unreadable_files": len(funnel.unreadable),
        "stream_job": "reporting" if stream.get("available") else stream.get("detail"),
        **{f"stream_{k}": _rounded(stream.get(k)) for k in _STREAM_FIELDS
           if stream.get("available")},
    }


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) and math.isfinite(value) else value


def count_leads(funnel: FunnelCounts, snapshot: SnapshotCustomers) -> int:
    """Customers of the snapshot, plus those with events the snapshot does not know yet."""
    return len(snapshot.ids) + sum(1 for c in funnel.customers if c not in snapshot.ids)


def compute_kpis(
    funnel: FunnelCounts,
    snapshot: SnapshotCustomers,
    leads: int,
    registry: CollectorRegistry | None,
    experiments: dict[str, Any],
    stream: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    """The dashboard's numbers from already updated sources (see the module docstring)."""
    counts = {"leads": leads, **{s: len(funnel.stages[s]) for s in STAGES}}
    rates = funnel_rates(counts)
    conversion, graduation = rates["conversion_rate"], rates["graduation_rate"]
    base_c, base_g = SEED_TARGETS["conversion_rate"], SEED_TARGETS["graduation_rate"]
    return {
        "generated_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "funnel": counts,
        "rates": {
            "conversion": round(conversion, 6),
            "conversion_baseline": base_c,
            "conversion_vs_baseline": _lift(conversion, base_c),
            "graduation": round(graduation, 6),
            "graduation_baseline": base_g,
            "graduation_vs_baseline": _lift(graduation, base_g),
            "churn": round(counts["churned"] / leads, 6) if leads else 0.0,
        },
        "conversion_series": conversion_series(funnel.first_enrolled_day, leads),
        "segments": {"available": snapshot.has_segments, "sizes": dict(snapshot.segments)},
        "experiments": experiments,
        "latency": {} if registry is None else latency_by_endpoint(registry),
        "freshness": freshness(funnel, stream, now),
    }


def _finite(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def _parts_signature(folder: Path) -> tuple:
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(folder)
                            if e.name.endswith(".parquet")))
    except FileNotFoundError:
        return ()


def experiment_rows(r: ExperimentReport) -> list[dict[str, Any]]:
    """One row per arm: decisions, outcome rates, revenue per decision, and the primary
    metric's always-valid comparison with the control."""
    primary = {c.arm: c for c in r.comparisons if c.role == "primary"}
    rows = []
    for a in r.arms:
        c = primary.get(a.arm)
        rows.append({
            "arm": a.arm,
            "policy": a.policy,
            "share": a.share,
            "decisions": a.n,
            "conversion": _finite(a.rates["enrolled"][0]),
            "graduation": _finite(a.rates["graduated"][0]),
            "churn": _finite(a.rates["churned"][0]),
            "revenue_per_decision": _finite(a.revenue[0]),
            "vs_control": "control" if c is None
            else f"{c.difference:+.4f} {r.primary_metric} ({c.verdict})",
            "status": "stopped" if a.stopped else "running",
        })
    return rows


class ExperimentPanel:
    """The active experiment's per-arm report over the feedback job's labels
    (``<home>/feedback``), recomputed only when the label parts or the arms' stops change.

    Read-only: a guardrail breach the report finds is shown, never recorded (the feedback
    job's report records stops).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._cached: tuple[tuple, dict[str, Any]] | None = None

    def get(self) -> dict[str, Any]:
        experiment = active_experiment(self.settings.experiments)
        if experiment is None:
            return {"running": False, "detail": "no experiment running", "arms": []}
        home, labels = self.settings.home, self.settings.home / "feedback"
        state = state_path(home, experiment.name)
        signature = (experiment, _parts_signature(labels / "labels"),
                     state.stat().st_mtime_ns if state.exists() else None)
        if self._cached is not None and self._cached[0] == signature:
            return self._cached[1]
        panel: dict[str, Any] = {"running": True, "name": experiment.name,
                                 "primary_metric": experiment.primary_metric}
        try:
            r = report(experiment, read_labels(labels),
                       stopped=read_stopped(home, experiment.name))
        except UserError as e:
            panel.update(detail=f"experiment {experiment.name}: {e}", arms=[])
        else:
            panel.update(detail=f"experiment {experiment.name}: {r.rows} labelled decisions",
                         arms=experiment_rows(r))
        self._cached = (signature, panel)
        return panel


class KpiBoard:
    """The dashboard's numbers for one serving replica, recomputed at most every ``ttl_s``.

    ``features`` is the snapshot the replica serves (a file, or a folder whose newest
    snapshot counts), ``registry`` the replica's Prometheus registry (request latency).
    Thread-safe: concurrent callers share one refresh.
    """

    def __init__(
        self,
        settings: Settings,
        features: str | Path | None = None,
        registry: CollectorRegistry | None = None,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.registry = registry
        self.ttl_s = ttl_s
        self.clock = clock
        self.experiments = ExperimentPanel(settings)
        self.funnel = FunnelCounts(Path(settings.offline_store_path()) / "events")
        self.snapshot = SnapshotCustomers(features)
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._leads: tuple[tuple, int] | None = None

    def get(self) -> dict[str, Any]:
        """The numbers, at most ``ttl_s`` old."""
        with self._lock:
            now = self.clock()
            if self._cached is not None and now - self._cached[0] < self.ttl_s:
                return self._cached[1]
            start = time.perf_counter()
            self.funnel.update()
            self.snapshot.update()
            # Both sets only grow between resets: count leads again only when either moved.
            version = (self.funnel.generation, self.snapshot.signature)
            if self._leads is None or self._leads[0] != version:
                self._leads = (version, count_leads(self.funnel, self.snapshot))
            kpis = compute_kpis(self.funnel, self.snapshot, self._leads[1], self.registry,
                                self.experiments.get(), stream_health(self.settings, now), now)
            kpis["compute_ms"] = round((time.perf_counter() - start) * 1000, 2)
            self._cached = (now, kpis)
            return kpis
