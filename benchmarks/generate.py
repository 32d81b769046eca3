"""Benchmark of ``ddso data generate``: events and customers per second, peak memory, bytes.

Options: ``customers`` (default 100000), ``days`` (default 365), ``seed`` (default 0). The
dataset goes to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from ddso.data.generator import GeneratorConfig, generate


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Generate one dataset and report its throughput (see module docstring)."""
    cfg = GeneratorConfig(customers=int(options.get("customers", 100_000)),
                          days=int(options.get("days", 365)), seed=int(options.get("seed", 0)))
    with tempfile.TemporaryDirectory(prefix="ddso-bench-generate-") as tmp:
        began = time.perf_counter()
        summary = generate(cfg, Path(tmp) / "data", progress=False)
        wall = time.perf_counter() - began
    return {
        "customers": cfg.customers,
        "days": cfg.days,
        "seed": cfg.seed,
        "events": summary["events"],
        "events_per_s": round(summary["events"] / wall, 1),
        "customers_per_s": round(cfg.customers / wall, 1),
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "bytes_written": summary["bytes_written"],
    }
