"""The decision service: everything the decision API does, without a web framework or Serve.

:class:`DecisionService` holds one replica's state (online store, propensity model, offers,
recommender, security backends, audit log, event sink) and answers each endpoint as a plain
method; :class:`AssessmentModel` assesses submitted financial profiles. The HTTP layer
(:func:`serve_deployments.api.make_api`) is built over a service, and the same app runs in a
Ray Serve replica (:mod:`serve_deployments.app`) or in one plain uvicorn process
(:mod:`serve_deployments.plain`, the baseline of ``ddso bench serve``), so the two run
identical code.
"""

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ddso.audit import AuditLog, make_record, offers_json
from ddso.config import Settings, load_settings
from ddso.errors import EventParseError, UserError
from ddso.experiments import RULES, ExperimentRouter, active_experiment
from ddso.features.financial import financial_features, profile_to_frame
from ddso.features.sets import (
    CUSTOMER_FEATURES,
    FEATURE_SET,
    FEATURE_SET_VERSION,
    cold_start_features,
)
from ddso.io.redis import make_redis
from ddso.kpis import KpiBoard
from ddso.models import scorecard
from ddso.models.assessment import Assessor
from ddso.models.reasons import describe
from ddso.models.recommend.served import DeepName, RecommenderKind, ServedRecommender
from ddso.models.registry import ModelRegistry
from ddso.pii import pseudonymise
from ddso.policy.arbitration import CustomerFacts, Offer
from ddso.policy.decide import (
    DEFAULT_EPSILON,
    POLICY_MODEL,
    RULE_POLICY,
    PropensityScorer,
    decide,
)
from ddso.policy.eligibility import eligible_mask
from ddso.schemas.base import Band
from ddso.schemas.events import OfferAccepted, OfferDeclined, OfferShown, parse_event_obj
from ddso.stores.online import LiveFeatures, SnapshotStore
from ddso.stores.redis_online import RedisOnlineStore
from rl_env.serving import load_policy
from serve_deployments.eventsink import EventSink
from serve_deployments.metrics import ApiMetrics
from serve_deployments.schemas import (
    AssessRequest,
    AssessResponse,
    DecideRequest,
    DecideResponse,
    EventError,
    EventsRequest,
    EventsResponse,
    FeedbackRequest,
    ProfileResponse,
    ReasonOut,
    Recommendation,
    RecommendationsResponse,
)
from serve_deployments.security import Security, build_security

PROPENSITY_MODEL = "propensity"

log = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (also the ``args`` of a Serve config file)."""

    model_config = ConfigDict(extra="forbid")

    registry: str = Field(description="Model registry folder.")
    features: str = Field(
        description="Feature snapshot (Parquet file), or an offline-store folder whose newest "
        "snapshot is loaded into the in-process store."
    )
    products: str = Field(description="Products table (Parquet folder) of the offer catalogue.")
    warehouse: str | None = Field(
        None,
        description="Warehouse folder with sales and sales_details, which the recommender is "
        "fitted on; default: the folder holding products.",
    )
    recommender: RecommenderKind = Field(
        "popularity",
        description="What /v1/customers/{id}/recommendations serves: 'popularity', or "
        "'hybrid' (item-CF, user-CF, TF-IDF and popularity under the business rules).",
    )
    deep_recommenders: list[DeepName] = Field(
        default_factory=list,
        description="Registry champions blended into the hybrid (needs recommender='hybrid'): "
        "'wide_deep', 'ncf'; trained by pipelines.train_recommenders.",
    )
    deep_weight: float = Field(
        1.0, gt=0, le=10, description="Weight of each deep model in the hybrid's blend."
    )
    reference_year: int = Field(2025, ge=1900, le=2200, description="Year ages are computed in.")
    epsilon: float = Field(
        DEFAULT_EPSILON, ge=0.0, le=1.0, description="Exploration rate of the decision policy."
    )
    config: str | None = Field(None, description="ddso settings YAML file read by the replicas.")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings overrides, e.g. {'home': '/srv/ddso', 'security': {...}}; "
        "they beat the YAML file and the DDSO_* environment of the replicas.",
    )
    audit_dir: str | None = Field(None, description="Audit log folder; default: <home>/audit.")
    audit_flush_records: int = Field(200, ge=1, description="Flush the audit log every N.")
    audit_flush_interval_s: float = Field(1.0, gt=0, description="... or every T seconds.")
    model_refresh_s: float = Field(
        10.0, ge=0, description="Look for newly promoted models every T seconds (0: never)."
    )

    @model_validator(mode="after")
    def _deep_needs_hybrid(self) -> "AppArgs":
        if self.deep_recommenders and self.recommender != "hybrid":
            raise ValueError(
                "deep_recommenders blend into the hybrid only: set recommender='hybrid'"
            )
        return self

    def load_settings(self) -> Settings:
        return load_settings(self.config, **self.settings)


def customer_inputs(
    store: LiveFeatures, customer_id: str, reference_year: int
) -> tuple[dict[str, float], CustomerFacts, bool, bool]:
    """Features, facts, cold start, degraded (the online store failed: snapshot values used)."""
    row, degraded = store.get(customer_id)
    if row is None:
        return cold_start_features(), CustomerFacts({}, "", 0), True, degraded
    features = {f: float(row[f]) for f in CUSTOMER_FEATURES}
    facts = CustomerFacts(
        consent={c: bool(row[f"consent_{c}"]) for c in ("email", "sms", "call", "app_push")},
        preferred_channel=row["preferred_channel"],
        age=reference_year - int(row["birth_year"]),
    )
    return features, facts, False, degraded


def _online_store(settings: Settings) -> RedisOnlineStore | None:
    """The live behaviour store when Redis is configured (fed by the stream job), else None."""
    if settings.redis.url is None:
        return None
    return RedisOnlineStore(make_redis(settings.redis), settings.redis.key_prefix,
                            settings.redis.feature_ttl_s)


def _programs(products_path: str) -> pd.DataFrame:
    df = pd.read_parquet(products_path)
    return df[df["program_kind"].notna()].sort_values("product_id").reset_index(drop=True)


def _load_offers(programs: pd.DataFrame) -> list[Offer]:
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
        for _, r in programs.iterrows()
    ]


def scorecard_reasons(features: dict[str, float], k: int = 3) -> list[dict[str, Any]]:
    """The scorecard's own factors: points each feature moves the score from its cold-start
    value, largest first (negative: it lowers the health score)."""
    base = scorecard.health_score(features)
    neutral = cold_start_features()
    moved = []
    for name in sorted(features):
        if name not in neutral or features[name] == neutral[name]:
            continue
        delta = base - scorecard.health_score({**features, name: neutral[name]})
        if delta != 0.0:
            moved.append((name, delta))
    moved.sort(key=lambda x: -abs(x[1]))
    return [
        {"feature": n, "text": describe(n, features[n]), "contribution": d} for n, d in moved[:k]
    ]


class AssessmentModel:
    """Assesses a financial profile: health score, band, reason codes, eligible programs.

    The trained risk model of the registry (:class:`ddso.models.assessment.Assessor`) when
    one is registered, else the scorecard.
    """

    def __init__(self, registry: str, products: str):
        self.programs = _programs(products)
        try:
            self.assessor: Assessor | None = Assessor.from_registry(
                ModelRegistry(registry), self.programs
            )
        except UserError:  # no trained assessment model: the scorecard answers instead
            self.assessor = None

    def ready(self) -> dict[str, Any]:
        return {
            "assessment": "assessment_risk" if self.assessor else scorecard.SCORECARD_VERSION,
        }

    def assess(self, features: dict[str, float]) -> dict[str, Any]:
        if self.assessor is not None:
            r = self.assessor.assess(features)
            return {
                "score": r.score,
                "band": r.band,
                "reasons": [
                    {"feature": x.feature, "text": x.text, "contribution": x.contribution}
                    for x in r.reasons
                ],
                "eligible_programs": r.eligible_programs,
                "graduation_likelihood": r.graduation_likelihood,
                "model": "assessment_risk",
            }
        points = scorecard.health_score(features)
        band = scorecard.band(points)
        facts = {
            "band": band,
            "debt_to_income": features.get("debt_to_income"),
            "age": features.get("age"),
            "monthly_income": features.get("monthly_income"),
        }
        eligible = self.programs[eligible_mask(self.programs, facts)]
        return {
            "score": points,
            "band": band.value,
            "reasons": scorecard_reasons(features),
            "eligible_programs": eligible["product_id"].tolist(),
            "graduation_likelihood": {},
            "model": scorecard.SCORECARD_VERSION,
        }


class AssessmentClient:
    """How a service reaches the assessment: ``ready()`` and ``assess(features)``, async."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[dict[str, Any]]],
        assess: Callable[[dict[str, float]], Awaitable[dict[str, Any]]],
    ):
        self.ready = ready
        self.assess = assess

    @classmethod
    def local(cls, model: AssessmentModel) -> "AssessmentClient":
        async def ready() -> dict[str, Any]:
            return model.ready()

        async def assess(features: dict[str, float]) -> dict[str, Any]:
            return model.assess(features)

        return cls(ready, assess)


class DecisionService:
    """One replica of the decision API, as plain methods (see the module docstring)."""

    def __init__(self, args: AppArgs | dict[str, Any], assessment: AssessmentClient):
        a = AppArgs.model_validate(args)
        settings = a.load_settings()
        self.assessment = assessment
        self.security: Security = build_security(settings)
        self.scorer: PropensityScorer | None = None
        self.missing: list[str] = []
        self.registry = registry = ModelRegistry(a.registry)
        try:
            self.scorer = PropensityScorer(registry.champion(PROPENSITY_MODEL))
        except UserError:
            self.missing.append(PROPENSITY_MODEL)
        self.policy = load_policy(registry)
        experiment = active_experiment(settings.experiments)
        self.router = None if experiment is None else ExperimentRouter(experiment, settings.home)
        self.arm_policies = {  # arms with a policy of their own (None: the rule), loaded once
            arm.name: None if arm.policy_version == RULES
            else load_policy(registry, arm.policy_version)
            for arm in (experiment.arms if experiment else ())
            if arm.policy_version is not None
        }
        self.store = LiveFeatures(SnapshotStore.from_parquet(a.features), _online_store(settings))
        self.offers = _load_offers(_programs(a.products))
        self.offers_json = offers_json(self.offers)
        self.reference_year = a.reference_year
        self.epsilon = a.epsilon
        self.pii_key = settings.pii_key_bytes()
        self.recommender = ServedRecommender(
            Path(a.warehouse) if a.warehouse else Path(a.products).parent,
            a.products,
            a.recommender,
            a.deep_recommenders,
            a.deep_weight,
            registry,
        )
        self.events = EventSink(settings)
        self.audit = AuditLog(
            a.audit_dir or settings.home / "audit",
            flush_records=a.audit_flush_records,
            flush_interval_s=a.audit_flush_interval_s,
            sink=self.events.decisions_producer(),
        )
        self.metrics = ApiMetrics()
        self.drift_status = self.metrics.watch_models(
            registry, (PROPENSITY_MODEL, POLICY_MODEL), drift_of=PROPENSITY_MODEL
        )
        self.metrics.watch_stream(settings)
        self.kpis = KpiBoard(settings, a.features, self.metrics.registry)

        self._stop_refresh = threading.Event()
        if a.model_refresh_s > 0:
            threading.Thread(target=self._refresh_loop, args=(a.model_refresh_s,),
                             name="ddso-model-refresh", daemon=True).start()

    def refresh_models(self) -> list[str]:
        """Load the registry's champions if they changed since loaded; the names swapped in.

        A new model is loaded whole before one attribute assignment swaps it in, and a
        request reads each model once, so requests in flight finish on the model they
        started with and none is dropped or fails while a promotion lands.
        """
        changed = []
        try:
            champion = self.registry.champion(PROPENSITY_MODEL)
        except UserError:
            champion = None
        current = self.scorer.version if self.scorer else None
        if champion is not None and f"{champion.name}:{champion.version}" != current:
            self.scorer = PropensityScorer(champion)
            self.missing = [m for m in self.missing if m != PROPENSITY_MODEL]
            changed.append(self.scorer.version)
        policy_id = self._champion_id(POLICY_MODEL)
        if policy_id != (self.policy.version if self.policy else None):
            self.policy = load_policy(self.registry)
            changed.append(self.policy.version if self.policy else RULE_POLICY)
        recommenders = self.recommender.refresh()
        if changed:
            self.drift_status = self.metrics.watch_models(
                self.registry, (PROPENSITY_MODEL, POLICY_MODEL), drift_of=PROPENSITY_MODEL
            )
        changed += recommenders
        if changed:
            log.info("models refreshed: %s", ", ".join(changed))
        return changed

    def _champion_id(self, name: str) -> str | None:
        try:
            v = self.registry.champion(name)
        except UserError:
            return None
        return f"{v.name}:{v.version}"

    def _refresh_loop(self, every_s: float) -> None:
        while not self._stop_refresh.wait(every_s):
            try:
                self.refresh_models()
            except Exception:  # a bad promotion must not stop later ones from landing
                log.exception("model refresh failed; serving the models already loaded")

    def close(self) -> None:
        if hasattr(self, "_stop_refresh"):
            self._stop_refresh.set()
        for part in ("audit", "events"):  # absent when __init__ failed part-way
            if hasattr(self, part):
                getattr(self, part).close()

    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "customers": len(self.store), "offers": len(self.offers)}

    async def readyz(self) -> tuple[dict[str, Any], bool]:
        """The readiness body and whether the service is ready (every model loaded)."""
        state = await self.assessment.ready()
        ready = not self.missing
        body = {
            "ready": ready,
            "missing": self.missing,
            "propensity": self.scorer.version if self.scorer else None,
            "policy": self.policy.version if self.policy else RULE_POLICY,
            "drift": self.drift_status,
            "recommender": self.recommender.current.label,
            "recommender_missing": self.recommender.missing,
            **state,
        }
        if not ready:
            body["detail"] = f"model(s) not available: {', '.join(self.missing)}"
        return body, ready

    def customer(self, customer_id: str) -> tuple[dict[str, float], CustomerFacts, bool, bool]:
        return customer_inputs(self.store, customer_id, self.reference_year)

    def decide(self, req: DecideRequest) -> dict[str, Any]:
        """Decide for one customer, audit it, and return the JSON body of the answer."""
        features, facts, cold, degraded = self.customer(req.customer_id)
        scorer = self.scorer  # once: a refresh may swap it while this request runs
        if scorer is None:
            raise HTTPException(503, f"model {PROPENSITY_MODEL!r} is not available")
        scores = scorer.score(features)
        versions = {
            "propensity": scores["model_version"],
            "propensity_sha256": scores["model_sha256"],
            "assessment": scorecard.SCORECARD_VERSION,
            "features": f"{FEATURE_SET}:v{FEATURE_SET_VERSION}",
            "policy": RULE_POLICY,
        }
        decided_at = time.time()
        pseudonym = pseudonymise(req.customer_id, self.pii_key, kind="customer")
        policy = self.policy
        arm = self.router.route(pseudonym, decided_at) if self.router else None
        if arm is not None:
            policy = self.arm_policies.get(arm.name, self.policy)  # default: the champion
            versions["experiment"] = self.router.experiment.name
            versions["arm"] = arm.name
        rank = None
        if policy is not None:
            versions["policy"] = policy.version
            versions["policy_sha256"] = policy.artifact_sha256
            rank = policy.ranker(features, facts, scores["band"], decided_at)
        d = decide(
            str(uuid.uuid4()),
            features,
            facts,
            scores,
            self.offers,
            epsilon=self.epsilon,
            versions=versions,
            policy=rank,
        )
        self.audit.write(
            make_record(
                d,
                customer_id=req.customer_id,
                pii_key=self.pii_key,
                request={"context": req.context.model_dump(mode="json")},
                features=features,
                facts=facts,
                offers_json=self.offers_json,
                cold_start=cold,
                decided_at=decided_at,
                customer_pseudonym=pseudonym,
            )
        )
        self.metrics.decision(d.channel, d.offer_id, d.explored,
                              arm=arm.name if arm else None)
        self.metrics.scored(scores, features, cold, degraded)
        return DecideResponse(
            decision_id=d.decision_id,
            customer_id=req.customer_id,
            action={"channel": d.channel, "offer_id": d.offer_id},
            propensity=d.propensity,
            explored=d.explored,
            scores=d.scores,
            reasons=[ReasonOut(**r) for r in d.reasons],
            eligible_offers=list(d.eligible),
            explanation=d.explanation,
            versions=d.versions,
            cold_start=cold,
            degraded=degraded,
        ).model_dump(mode="json")

    async def assess(self, req: AssessRequest) -> AssessResponse:
        row = financial_features(profile_to_frame(req.profile)).iloc[0]
        features = {k: float(v) for k, v in row.items() if k != "customer_id"}
        known = self.store.snapshot.get(req.profile.customer_id) or {}
        for name in ("tenure_days", "complaints_365d", "monetary_365d"):
            features[name] = float(known.get(name, 0.0))
        age = req.age
        if age is None and known.get("birth_year") is not None:
            age = self.reference_year - int(known["birth_year"])
        features["age"] = float(age) if age is not None else math.nan
        result = await self.assessment.assess(features)
        return AssessResponse(customer_id=req.profile.customer_id, **result)

    def profile(self, customer_id: str) -> ProfileResponse:
        features, _, cold, _ = self.customer(customer_id)
        row = self.store.snapshot.get(customer_id) or {}
        segment = row.get("segment")
        return ProfileResponse(
            customer_id=customer_id,
            features=features,
            segment=None if segment is None else str(segment),
            cold_start=cold,
        )

    def recommendations(self, customer_id: str, k: int) -> RecommendationsResponse:
        model, items = self.recommender.recommend(customer_id, k)
        return RecommendationsResponse(
            customer_id=customer_id,
            model=model,
            items=[Recommendation(product_id=p, score=float(s)) for p, s in items],
        )

    async def feedback(self, req: FeedbackRequest) -> dict[str, Any]:
        model = {"shown": OfferShown, "accepted": OfferAccepted, "declined": OfferDeclined}
        event = model[req.outcome](
            type=f"offer_{req.outcome}",
            event_id=f"fb-{req.decision_id}-{req.outcome}",
            customer_id=req.customer_id,
            event_time=req.event_time or datetime.now(UTC),
            source="api",
            offer_id=req.product_id,
            product_id=req.product_id,
            channel=req.channel,
            decision_id=req.decision_id,
        )
        await asyncio.to_thread(self.events.append, [event])
        return {"event_id": event.event_id, "accepted": True}

    async def ingest(self, req: EventsRequest) -> EventsResponse:
        accepted, errors = [], []
        for i, obj in enumerate(req.events):
            try:
                accepted.append(parse_event_obj(obj))
            except EventParseError as e:
                errors.append(EventError(index=i, reason=e.reason, detail=e.detail))
        if accepted:
            await asyncio.to_thread(self.events.append, accepted)
        return EventsResponse(accepted=len(accepted), rejected=len(errors), errors=errors)
