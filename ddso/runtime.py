"""Starting (or joining) Ray from the settings: the one place that calls ``ray.init``."""

from __future__ import annotations

import os

from ddso.config import Settings


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
