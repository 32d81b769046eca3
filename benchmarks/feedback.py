"""``ddso bench feedback``: outcome-to-label latency of the feedback job at a sustained rate.

The embedded default: ``decisions`` decisions (one per customer, every one a contact) are
audited first; then events are appended to the local log at ``rate`` events/s for
``seconds`` (the stream's mix, with a share ``outcome_share`` of outcomes: enrolments, half
naming their decision, and purchases), while ``pipelines.feedback`` follows the log in its
own process. Per outcome: the time it was appended -> the time the label part holding its
decision's new label was written (``labelled_at``); p50, p99, max. Also the job's
throughput (events/s it kept up with) and its peak RSS.

Options: rate (default 10000), seconds (10), decisions (20000), outcome_share (0.05).
Target: p99 under 5 s at 10k events/s.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ddso.audit import SCHEMA
from ddso.config import Settings
from ddso.io.eventlog import LocalEventLog
from ddso.pii import pseudonymise
from pipelines.feedback import Args, run_stream


def _when(now_s: float) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_s))
            + f".{int(now_s % 1 * 1e6):06d}+00:00")


def _event(i: int, kind: str, customer: int, now_s: float) -> bytes:
    head = (f'{{"type":"{kind}","event_id":"f{i}","customer_id":"c{customer}",'
            f'"event_time":"{_when(now_s)}","source":"web"')
    body = {
        "view": ',"session_id":"s{c}","product_id":"p{p}","price":19.5',
        "click": ',"session_id":"s{c}","product_id":"p{p}"',
        "enrollment": ',"enrollment_id":"n{i}","product_id":"P1","monthly_payment":40.0',
        "enrollment_named": ',"enrollment_id":"n{i}","product_id":"P1","monthly_payment":40.0,'
                            '"decision_id":"d{c}"',
        "purchase": ',"sale_id":"S{i}","channel":"web","lines":[{{"product_id":"p{p}",'
                    '"quantity":2,"unit_price":19.5,"discount":0.1}}]',
    }[kind].format(c=customer, p=i % 300, i=i)
    return (head.replace("enrollment_named", "enrollment") + body + "}").encode()


def _audit(settings: Settings, decisions: int, now_s: float) -> None:
    key = settings.pii_key_bytes()
    folder = settings.home / "audit"
    folder.mkdir(parents=True)
    rows = [{"decision_id": f"d{c}", "decided_at": now_s - 3600, "cold_start": False,
             "customer_pseudonym": pseudonymise(f"c{c}", key, kind="customer"),
             "request": "{}", "features": '{"recency_days":3.0,"sessions_30d":2.0}',
             "facts": "{}", "offers": "[]", "channel": "email", "offer_id": "P1",
             "propensity": 0.95, "explored": False, "decision": "{}"}
            for c in range(decisions)]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), folder / "audit-0-bench.parquet")


def _follow(settings: Settings, args: Args, out: mp.Queue) -> None:
    totals = run_stream(settings, args)
    totals["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put(totals)


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    rate = float(options.get("rate", 10_000))
    seconds = float(options.get("seconds", 10))
    decisions = int(options.get("decisions", 20_000))
    share = float(options.get("outcome_share", 0.05))
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), pii_key="bench-key-" + "x" * 22)
        _audit(settings, decisions, time.time())
        log = LocalEventLog(settings.event_log_path(), partitions=4)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        job = ctx.Process(target=_follow, args=(settings, Args(poll_s=0.05, idle_exit_s=3), out))
        job.start()
        # The job's start (imports, reading the audit) is not an outcome's wait: it is ready
        # when it has written the labels of the audited decisions.
        deadline = time.monotonic() + 120
        while not list((settings.home / "feedback" / "labels").glob("part-*.parquet")):
            if time.monotonic() > deadline or not job.is_alive():
                raise RuntimeError("the feedback job did not start; see its output above")
            time.sleep(0.05)
        n = int(rate * seconds)
        kinds = rng.choice(["view", "click", "enrollment", "enrollment_named", "purchase"], n,
                           p=[(1 - share) * 0.7, (1 - share) * 0.3, share * 0.4, share * 0.4,
                              share * 0.2])
        who = rng.integers(0, decisions, n)
        appended: dict[str, float] = {}
        chunk = max(1, int(rate / 100))  # appends every 10 ms
        start = time.monotonic()
        for lo in range(0, n, chunk):
            wait = start + lo / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now = time.time()
            records = [(f"c{who[i]}".encode(), _event(i, kinds[i], int(who[i]), now))
                       for i in range(lo, min(n, lo + chunk))]
            log.append(records)
            for i in range(lo, min(n, lo + chunk)):
                if kinds[i] not in ("view", "click"):
                    appended[f"f{i}"] = now
        achieved = n / (time.monotonic() - start)
        totals = out.get(timeout=600)
        job.join()
        log.close()
        latency = _latencies(settings.home / "feedback", appended)
    return {
        "offered_rate": rate,
        "achieved_rate": round(achieved),
        "events": n,
        "outcomes": len(appended),
        "outcomes_labelled": len(latency),
        "latency_p50_ms": round(float(np.percentile(latency, 50)) * 1000, 1),
        "latency_p99_ms": round(float(np.percentile(latency, 99)) * 1000, 1),
        "latency_max_ms": round(float(latency.max()) * 1000, 1),
        "label_updates": int(totals["label_updates"]),
        "peak_rss_mb": round(totals["peak_rss_mb"], 1),
    }


def _latencies(root: Path, appended: dict[str, float]) -> np.ndarray:
    """Seconds from each outcome's append to the label part written with it."""
    seen: dict[str, float] = {}
    for part in sorted((root / "outcomes").glob("part-*.parquet")):
        labelled = pq.read_table(root / "labels" / part.name, columns=["labelled_at"])
        at = labelled["labelled_at"][0].as_py() if labelled.num_rows else None
        for event_id in pq.read_table(part, columns=["event_id"])["event_id"].to_pylist():
            if event_id in appended and event_id not in seen and at is not None:
                seen[event_id] = at - appended[event_id]
    return np.array(list(seen.values()))
