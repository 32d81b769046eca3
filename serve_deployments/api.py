"""The HTTP API of a :class:`~serve_deployments.service.DecisionService`, as a FastAPI app.

:func:`make_api` builds one app per service, with the routes as closures over it, so the same
app runs in a Ray Serve replica (``__serve_build_asgi_app__`` of
:class:`serve_deployments.app.DecisionIngress`) and in a plain uvicorn process
(:mod:`serve_deployments.plain`). OpenAPI at ``/docs``; GraphQL at ``/graphql``
(:mod:`serve_deployments.graphql`).

The middleware is pure ASGI (request metrics, body-size limit): Starlette's
``BaseHTTPMiddleware`` runs each request through an extra task group and memory streams,
which cost about a tenth of a replica's CPU per request here.

No ``from __future__ import annotations``: FastAPI reads the request models from the
annotations of the route functions.
"""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from starlette.responses import HTMLResponse, JSONResponse, Response

from ddso.security.errors import AuthenticationError, PermissionDeniedError
from serve_deployments import dashboard, graphql
from serve_deployments.metrics import MetricsMiddleware
from serve_deployments.schemas import (
    AssessRequest,
    AssessResponse,
    DecideRequest,
    DecideResponse,
    EventsRequest,
    EventsResponse,
    FeedbackRequest,
    FeedbackResponse,
    ProfileResponse,
    RecommendationsResponse,
)
from serve_deployments.security import idempotent, install, require
from serve_deployments.service import DecisionService

VERSION = "0.3.0"
CustomerIdPath = Annotated[
    str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
]


def make_api(service: DecisionService) -> FastAPI:
    """The decision API over ``service``, with its security and metrics installed."""
    api = FastAPI(title="ddso decision API", version=VERSION)

    # --- public ----------------------------------------------------------------------------

    @api.get("/healthz")
    def healthz() -> dict[str, Any]:
        return service.healthz()

    @api.get("/readyz")
    async def readyz() -> Response:
        body, ready = await service.readyz()
        return JSONResponse(body, status_code=200 if ready else 503)

    @api.get("/metrics")
    def metrics(key_id: str = Depends(require("admin"))) -> Response:
        return service.metrics.exposition()

    # --- decide ------------------------------------------------------------------------------

    @api.post("/v1/decide", response_model=DecideResponse)
    async def decide(
        req: DecideRequest, request: Request, key_id: str = Depends(require("decide"))
    ) -> Response:
        async def run() -> dict[str, Any]:
            return service.decide(req)

        return await idempotent(request, f"decide.{key_id}", req.model_dump(mode="json"), run)

    # --- assessment and customers ------------------------------------------------------------

    @api.post("/v1/assess", response_model=AssessResponse)
    async def assess(
        req: AssessRequest, key_id: str = Depends(require("decide"))
    ) -> AssessResponse:
        return await service.assess(req)

    @api.get("/v1/customers/{customer_id}/profile", response_model=ProfileResponse)
    def profile(
        customer_id: CustomerIdPath, key_id: str = Depends(require("decide"))
    ) -> ProfileResponse:
        return service.profile(customer_id)

    @api.get("/v1/customers/{customer_id}/recommendations", response_model=RecommendationsResponse)
    def recommendations(
        customer_id: CustomerIdPath,
        k: Annotated[int, Query(ge=1, le=50, description="How many items (1-50).")] = 10,
        key_id: str = Depends(require("decide")),
    ) -> RecommendationsResponse:
        return service.recommendations(customer_id, k)

    # --- GraphQL: the same service, key scope, rate limit and audit as the routes above -----

    @api.post("/graphql")
    async def graphql_post(
        body: graphql.GraphQLRequest, request: Request, key_id: str = Depends(require("decide"))
    ) -> Response:
        return await graphql.answer(service, request, key_id, body)

    @api.get("/graphql")
    async def graphql_get(
        request: Request,
        query: Annotated[str, Query(description="The GraphQL query (no decisions by GET).")],
        variables: Annotated[str | None, Query(description="Its variables, as JSON.")] = None,
        operation_name: Annotated[str | None, Query(alias="operationName")] = None,
        key_id: str = Depends(require("decide")),
    ) -> Response:
        return await graphql.answer_get(service, request, key_id, query, variables,
                                        operation_name)

    # --- ingest ------------------------------------------------------------------------------

    @api.post("/v1/feedback", response_model=FeedbackResponse)
    async def feedback(
        req: FeedbackRequest, request: Request, key_id: str = Depends(require("ingest"))
    ) -> Response:
        return await idempotent(
            request,
            f"feedback.{key_id}",
            req.model_dump(mode="json"),
            lambda: service.feedback(req),
        )

    @api.post("/v1/events", response_model=EventsResponse)
    async def ingest_events(
        req: EventsRequest, key_id: str = Depends(require("ingest"))
    ) -> EventsResponse:
        return await service.ingest(req)

    # --- KPI dashboard (admin key: Bearer header, or the cookie of /dashboard/login) ----------

    @api.get("/v1/kpis")
    def kpis(key_id: str = Depends(dashboard.require_viewer)) -> dict[str, Any]:
        return service.kpis.get()

    @api.get("/dashboard", response_class=HTMLResponse)
    def dashboard_page(request: Request) -> Response:
        try:
            dashboard.authenticate(request)
        except (AuthenticationError, PermissionDeniedError) as e:
            return dashboard.sign_in_form(request, str(e), e.status_code)
        return dashboard.page(service.kpis.get())

    @api.post("/dashboard/login", response_class=HTMLResponse)
    async def dashboard_login(request: Request) -> Response:
        token = dashboard.form_token(await request.body())
        if token is None:
            return dashboard.sign_in_form(request, "enter an API key", 401)
        try:
            dashboard.authenticate(request, token)
        except (AuthenticationError, PermissionDeniedError) as e:
            return dashboard.sign_in_form(request, str(e), e.status_code)
        return dashboard.signed_in(request, token)

    @api.post("/dashboard/logout")
    def dashboard_logout(request: Request) -> Response:
        return dashboard.signed_out(request)

    install(api, service.security)
    api.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return api
