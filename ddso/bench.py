"""Runs a benchmark from ``benchmarks/`` and records its metrics as one flat JSON object.

A benchmark is a module ``benchmarks/<name>.py`` with ``run(options: dict[str, str]) ->
dict[str, float | int | str]``. The runner adds where it ran (cores, Python, Ray and package
versions), prints the object and writes it to ``--json PATH``. Tests never time anything;
speed and memory are measured only here.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import pkgutil
import platform
from pathlib import Path

from ddso.errors import UserError

_PACKAGES = ("ray", "xgboost", "pyspark", "kafka-python", "redis", "pandas", "pyarrow", "pydantic")


def available() -> list[str]:
    import benchmarks

    return sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_")
    )


def environment() -> dict[str, str | int]:
    env: dict[str, str | int] = {
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    for pkg in _PACKAGES:
        try:
            env[f"version_{pkg.replace('-', '_')}"] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            env[f"version_{pkg.replace('-', '_')}"] = "missing"
    return env


def parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"bench option {pair!r} must look like KEY=VALUE")
        options[key] = value
    return options


def run_benchmark(name: str, json_path: Path | None, option_pairs: list[str]) -> dict:
    """Run ``benchmarks/<name>.py`` and return (and print, and write) its flat metrics."""
    names = available()
    if name not in names:
        raise UserError(f"unknown benchmark {name!r}; choose one of: {', '.join(names)}")
    module = importlib.import_module(f"benchmarks.{name}")
    metrics = module.run(parse_options(option_pairs))
    nested = [k for k, v in metrics.items() if isinstance(v, dict | list)]
    if nested:
        raise AssertionError(f"benchmark {name} returned nested values for {nested}")
    result = {"benchmark": name, **metrics, **environment()}
    text = json.dumps(result, sort_keys=False)
    print(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result
