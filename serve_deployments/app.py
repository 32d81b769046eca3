"""The ddso decision API as a Ray Serve application.

Two deployments composed through a DeploymentHandle:

- ``DecisionIngress`` (FastAPI): validates the request, looks the customer up in the online
  store (in-process on the embedded default), asks ``Assessment`` for scores, arbitrates and
  answers. Feature lookup and arbitration stay in the ingress replica: on this machine kind
  every extra handle hop costs real capacity (see DESIGN.md), and neither needs to scale on
  its own.
- ``Assessment``: the XGBoost models (propensity with reason codes) and the financial-health
  scorecard; a separate deployment because models are the part that is replaced and scaled
  independently.

``build_app(args)`` is the only entry point; importing this module serves nothing. No
``from __future__ import annotations`` here: FastAPI must see the request models as classes,
not strings, through Serve's class-based ingress.
"""


import uuid
from typing import Any

import pandas as pd
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from ddso.features.sets import (
    CUSTOMER_FEATURES,
    FEATURE_SET,
    FEATURE_SET_VERSION,
    cold_start_features,
)
from ddso.models import scorecard
from ddso.models.binary import load_calibrator
from ddso.models.reasons import top_reasons
from ddso.models.registry import ModelRegistry
from ddso.models.xgb import XGBScorer
from ddso.policy.arbitration import CustomerFacts, Offer, arbitrate
from ddso.schemas.base import Band, Id
from ddso.stores.online import SnapshotStore

PROPENSITY_MODEL = "propensity"


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (also the ``args`` of a Serve config file)."""

    model_config = ConfigDict(extra="forbid")

    registry: str = Field(description="Model registry folder.")
    features: str = Field(
        description="Feature snapshot (Parquet file), or an offline-store folder whose newest "
        "snapshot is loaded into the in-process store."
    )
    products: str = Field(description="Products table (Parquet folder) of the offer catalogue.")
    reference_year: int = Field(2025, ge=1900, le=2200, description="Year ages are computed in.")


class DecideContext(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    page: str | None = Field(None, max_length=200, description="Where the customer is, if online.")
    channel_hint: str | None = Field(None, max_length=20)


class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    customer_id: Id
    context: DecideContext = DecideContext()


class ReasonOut(BaseModel):
    feature: str
    text: str
    contribution: float


class DecideResponse(BaseModel):
    decision_id: str
    customer_id: str
    action: dict[str, str | None]
    scores: dict[str, float | str]
    reasons: list[ReasonOut]
    eligible_offers: list[str]
    explanation: str
    versions: dict[str, str]
    cold_start: bool


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
)
class Assessment:
    """Scores one customer's feature row: propensity + reason codes, health score + band."""

    def __init__(self, registry: str):
        version = ModelRegistry(registry).champion(PROPENSITY_MODEL)
        self.features = version.metadata["features"]
        self.scorer = XGBScorer(version.artifact("model.ubj"), self.features)
        self.calibrator = load_calibrator(version)
        self.version = f"{version.name}:{version.version}"
        self.artifact_sha256 = version.artifact_sha256

    def score(self, features: dict[str, float]) -> dict[str, Any]:
        row = self.scorer.vector(features)
        propensity = float(self.calibrator.apply(self.scorer.predict(row)))
        reasons = top_reasons(self.scorer.contributions(row), self.features, row[0])
        health = scorecard.health_score(features)
        return {
            "propensity": propensity,
            "health_score": health,
            "band": scorecard.band(health).value,
            "reasons": [r.__dict__ for r in reasons],
            "model_version": self.version,
            "model_sha256": self.artifact_sha256,
        }


api = FastAPI(title="ddso decision API", version="0.1.0")


def _load_offers(products_path: str) -> list[Offer]:
    df = pd.read_parquet(products_path)
    programs = df[df["program_kind"].notna()]

    def opt(row: pd.Series, col: str) -> Any:
        value = row.get(col)
        return None if value is None or pd.isna(value) else value

    return [
        Offer(
            product_id=r["product_id"],
            name=r["name"],
            program_kind=r["program_kind"],
            price=float(r["price"]),
            margin=float(r["margin"]),
            min_band=Band(opt(r, "eligibility_min_band"))
            if opt(r, "eligibility_min_band")
            else None,
            max_debt_to_income=opt(r, "eligibility_max_debt_to_income"),
            min_age=int(opt(r, "eligibility_min_age")) if opt(r, "eligibility_min_age") else None,
            min_income_monthly=opt(r, "eligibility_min_income_monthly"),
        )
        for _, r in programs.sort_values("product_id").iterrows()
    ]


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
@serve.ingress(api)
class DecisionIngress:
    def __init__(self, assessment: DeploymentHandle, args: dict[str, Any]):
        a = AppArgs.model_validate(args)
        self.assessment = assessment
        self.store = SnapshotStore.from_parquet(a.features)
        self.offers = _load_offers(a.products)
        self.reference_year = a.reference_year

    @api.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "customers": len(self.store), "offers": len(self.offers)}

    @api.post("/v1/decide", response_model=DecideResponse)
    async def decide(self, req: DecideRequest) -> DecideResponse:
        row = self.store.get(req.customer_id)
        cold = row is None
        features = cold_start_features() if cold else {f: float(row[f]) for f in CUSTOMER_FEATURES}
        facts = CustomerFacts(
            consent={}
            if cold
            else {c: bool(row[f"consent_{c}"]) for c in ("email", "sms", "call", "app_push")},
            preferred_channel="" if cold else row["preferred_channel"],
            age=0 if cold else self.reference_year - int(row["birth_year"]),
        )
        scores = await self.assessment.score.remote(features)
        if scores is None:
            raise HTTPException(503, "model 'propensity' is not available")
        action = arbitrate(facts, features, Band(scores["band"]), scores["propensity"], self.offers)
        return DecideResponse(
            decision_id=str(uuid.uuid4()),
            customer_id=req.customer_id,
            action={"channel": action.channel, "offer_id": action.offer_id},
            scores={
                "propensity": scores["propensity"],
                "health_score": scores["health_score"],
                "band": scores["band"],
                "expected_value": action.expected_value,
            },
            reasons=[
                ReasonOut(**{k: r[k] for k in ("feature", "text", "contribution")})
                for r in scores["reasons"]
            ],
            eligible_offers=list(action.eligible),
            explanation=action.reason,
            versions={
                "propensity": scores["model_version"],
                "propensity_sha256": scores["model_sha256"],
                "assessment": scorecard.SCORECARD_VERSION,
                "features": f"{FEATURE_SET}:v{FEATURE_SET_VERSION}",
            },
            cold_start=cold,
        )


def build_app(args: dict[str, Any]) -> Application:
    """The decision application; ``args`` are validated as :class:`AppArgs`."""
    validated = AppArgs.model_validate(args)
    return DecisionIngress.bind(Assessment.bind(validated.registry), validated.model_dump())
