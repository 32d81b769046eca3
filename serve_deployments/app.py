"""The ddso decision API as a Ray Serve application.

Two deployments composed through a DeploymentHandle:

- ``DecisionIngress``: the FastAPI app of :func:`serve_deployments.api.make_api` over one
  :class:`~serve_deployments.service.DecisionService`: authentication (API keys with
  scopes, per-key rate limits, body-size limit, idempotency keys), the online-store lookup
  (in-process on the embedded default), propensity scoring with reason codes, the pure
  decision function (:func:`ddso.policy.decide.decide`), the audit record. The whole
  ``/v1/decide`` path runs in this replica: a handle hop to a scoring deployment cost about
  3.5 ms of CPU in the callee and 1.5 ms in the caller per request, against 0.7 ms for the
  scoring itself, and capped the app near 170 requests/s on this machine kind (README,
  ``ddso bench serve``). Replicas of the ingress scale the whole path instead.
- ``Assessment``: the financial-health assessment of a submitted profile (``/v1/assess``):
  called rarely, with models replaced and scaled on their own.

Overload: both deployments bound their queues (``max_queued_requests``), so excess requests
get a quick 503 with ``Retry-After: 1`` from Serve instead of waiting without end. A missing
model answers 503 naming it; a backing service that is down answers 503, never a 500.

``build_app(args)`` is the only entry point; importing this module serves nothing.
"""

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig
from ray.serve.handle import DeploymentHandle

from serve_deployments.api import make_api
from serve_deployments.service import (
    AppArgs,
    AssessmentClient,
    AssessmentModel,
    DecisionService,
)

OVERLOAD = BackpressureConfig(status_code=503, retry_after_s=1)
"""The answer to a request over a full queue (``max_queued_requests``): 503, Retry-After 1."""


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=32,
    max_queued_requests=256,
    backpressure_config=OVERLOAD,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
)
class Assessment:
    """:class:`~serve_deployments.service.AssessmentModel` as a deployment."""

    def __init__(self, registry: str, products: str):
        self.model = AssessmentModel(registry, products)

    def ready(self) -> dict[str, Any]:
        return self.model.ready()

    def assess(self, features: dict[str, float]) -> dict[str, Any]:
        return self.model.assess(features)


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    num_replicas=1,
    max_ongoing_requests=64,
    max_queued_requests=256,
    backpressure_config=OVERLOAD,
)
@serve.ingress()
class DecisionIngress:
    def __init__(self, assessment: DeploymentHandle, args: dict[str, Any]):
        async def ready() -> dict[str, Any]:
            return await assessment.ready.remote()

        async def assess(features: dict[str, float]) -> dict[str, Any]:
            return await assessment.assess.remote(features)

        self.service = DecisionService(args, AssessmentClient(ready, assess))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return make_api(self.service)

    def __del__(self) -> None:
        if hasattr(self, "service"):  # absent when __init__ failed
            self.service.close()


def build_app(args: dict[str, Any]) -> Application:
    """The decision application; ``args`` are validated as :class:`AppArgs`.

    Relative paths in the settings are fixed against this process's working folder (replicas
    run elsewhere). Without Redis the limiter and idempotency state live in the ingress
    replica, so it runs as exactly one; with Redis it autoscales.
    """
    a = AppArgs.model_validate(args)
    settings = a.load_settings()
    overrides = {**a.settings, "home": str(Path(settings.home).resolve())}
    a = a.model_copy(update={"settings": overrides})
    ingress = DecisionIngress
    if settings.redis.url:
        ingress = DecisionIngress.options(
            num_replicas="auto",
            autoscaling_config={
                "min_replicas": 1,
                "max_replicas": 4,
                "target_ongoing_requests": 16,
            },
        )
    return ingress.bind(Assessment.bind(a.registry, a.products), a.model_dump(mode="json"))
