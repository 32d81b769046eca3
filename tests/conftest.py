"""Fixtures shared by the whole suite.

One local Ray session per test run (``ray_session``), started lazily by the first test that
asks for it. The real-service fixtures (the Kafka-protocol broker, Redis) live in
``tests/plugins/services.py``.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.plugins.services"]

# Ray prints usage-stats prompts and starts a dashboard unless told not to; tests want neither.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session():
    """The one local Ray session of the run: 2 CPUs, no dashboard, shut down at the end."""
    import ray

    from ddso.runtime import apply_serve_env

    apply_serve_env()  # the Serve settings ddso runs with, before Ray starts
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=1024 * 1024 * 1024,
            log_to_driver=False,
        )
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()
