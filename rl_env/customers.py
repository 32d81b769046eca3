"""The customers an episode is drawn from, and the programs they can be offered.

A :class:`CustomerPool` holds, per customer, what the dynamics need: the latent drivers
(financial health, program interest, price sensitivity), the facts and served features the
platform would see (assessment band, age, the financial features of
:func:`ddso.features.financial.financial_features`), consent and channel preference, and the
eligibility of every program, judged by the one rule table :data:`ddso.policy.eligibility.RULES`.

Pools come from the generator (:func:`synthetic_pool`, which draws the customers of
``ddso data generate`` for the same seed through
:func:`ddso.data.population.draw_population`) or from real tables (:func:`pool_from_tables`:
customers and financial profiles in the warehouse schema, with the latent drivers that no
table holds drawn from the generator's population averages). A pool is data, drawn once and
shared read-only by every environment built with the same arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa

from ddso.data.funnel import ideal_kind
from ddso.data.population import (
    CHANNELS,
    CHURN_LOGIT,
    COMPLAINTS_PER_YEAR,
    Population,
    draw_population,
)
from ddso.data.world import DAY_US, World, build_world
from ddso.features.financial import FEATURE_COLUMNS as FINANCIAL_FEATURES
from ddso.features.financial import financial_features
from ddso.models.scorecard import band as scorecard_band
from ddso.models.scorecard import health_score
from ddso.policy.eligibility import BAND_RANK, RULES

POOL_START = date(2025, 1, 1)
"""First day of the window the synthetic pool is drawn for (the generator's default start)."""

# Latent drivers of real customers, which no table holds: the generator population's averages
# (interest ~0.27, price sensitivity ~0.5, churn logit of an average existing customer) and
# the health at the middle of each band the generator's assessment noise maps to it.
_REAL_INTEREST_MEAN = 0.27
_REAL_PRICE_SENSITIVITY = (2.0, 2.0)
_REAL_CHURN_LOGIT = -3.0
_REAL_COMPLAINTS_PER_YEAR = 0.1
BAND_HEALTH = np.array([1.3, 0.6, -0.05, -0.75, -1.6])
"""A representative latent health per band (A..E): the centre of the generator's band cuts."""
_BAND_NOISE = 0.35


@dataclass(frozen=True, eq=False)
class ProgramTable:
    """The offerable programs (the catalogue's financial programs), in action order."""

    product_ids: tuple[str, ...]
    kind: np.ndarray
    """Index into :data:`ddso.data.world.PROGRAM_KINDS`."""
    months: np.ndarray
    monthly_payment: np.ndarray
    limits: pd.DataFrame
    """The programs' ``eligibility_*`` columns, as the products table holds them."""

    @property
    def size(self) -> int:
        return len(self.product_ids)

    @classmethod
    def from_world(cls, world: World) -> ProgramTable:
        cg = world.catalogue
        products = world.tables["products"].to_pandas()
        rows = products.iloc[cg.program_products]
        return cls(
            product_ids=tuple(rows["product_id"]),
            kind=cg.program_kind.copy(),
            months=cg.program_months.copy(),
            monthly_payment=cg.price[cg.program_products] / cg.program_months,
            limits=rows.filter(like="eligibility_").reset_index(drop=True),
        )


@dataclass(frozen=True, eq=False)
class CustomerPool:
    """Per-customer arrays (one row per customer) the dynamics index by customer number."""

    customer_ids: np.ndarray
    health: np.ndarray
    """Latent financial health (z-score, higher is healthier)."""
    interest: np.ndarray
    """Latent interest in financial programs, 0..1."""
    price_sensitivity: np.ndarray
    band: np.ndarray
    """Assessment band rank, 0 = A .. 4 = E."""
    age: np.ndarray
    preferred: np.ndarray
    """Index into CHANNELS of the preferred channel (-1 when unknown)."""
    consent: np.ndarray
    """(customers, channels) bool, CHANNELS order."""
    tenure_days: np.ndarray
    """Days a customer has been known at the start of the episode."""
    financial: np.ndarray
    """(customers, features) served financial features, in ``FINANCIAL_FEATURES`` order."""
    eligible: np.ndarray
    """(customers, programs) bool: every eligibility rule met."""
    ideal_kind: np.ndarray
    """The program kind that suits the customer's finances (offers of it 'fit')."""
    churn_logit: np.ndarray
    """Logit of churning over ``churn_window_days`` with no complaint; -inf cannot churn."""
    complaint_rate: np.ndarray
    """Daily probability of a complaint that no contact provoked."""
    programs: ProgramTable

    @property
    def size(self) -> int:
        return len(self.health)


def eligibility_matrix(limits: pd.DataFrame, facts: dict[str, np.ndarray]) -> np.ndarray:
    """(customers, products) bool: every rule of :data:`RULES` met, for many customers at once.

    The vectorised twin of :func:`ddso.policy.eligibility.eligible_mask` (one customer, many
    products), reading the same rule table; ``facts["band"]`` holds band ranks (0 = A), the
    other facts are numbers, NaN where unknown (an unknown fact fails a rule that is set).
    """
    n = len(next(iter(facts.values())))
    ok = np.ones((n, len(limits)), dtype=bool)
    for rule in RULES:
        column = f"eligibility_{rule.limit}"
        if column not in limits:
            continue
        if rule.kind == "band":
            limit = limits[column].map(BAND_RANK).to_numpy(dtype=float)
        else:
            limit = limits[column].to_numpy(dtype=float)
        value = np.asarray(facts[rule.fact], dtype=float)[:, None]
        meets = value >= limit if rule.kind == "min" else value <= limit
        ok &= np.isnan(limit)[None, :] | meets
    return ok


def _facts(band: np.ndarray, age: np.ndarray, financial: np.ndarray) -> dict[str, np.ndarray]:
    col = FINANCIAL_FEATURES.index
    return {"band": band, "age": age,
            "debt_to_income": financial[:, col("debt_to_income")],
            "monthly_income": financial[:, col("monthly_income")]}


def _frozen(pool: CustomerPool) -> CustomerPool:
    """A copy whose arrays are private and read-only (pools are shared between envs)."""
    arrays = {k: np.array(v) for k, v in vars(pool).items() if isinstance(v, np.ndarray)}
    for value in arrays.values():
        value.flags.writeable = False
    return replace(pool, **arrays)


def pool_from_population(pop: Population, programs: ProgramTable, start_us: int) -> CustomerPool:
    """A pool of the generator's customers (``pop``), as at ``start_us``."""
    financial = financial_features(pop.profiles)[list(FINANCIAL_FEATURES)].to_numpy(float)
    existing = pop.created_us < start_us
    churn_logit = CHURN_LOGIT[pop.segment] - 0.5 * np.log(pop.activity) - 0.3 * pop.health
    complaints = COMPLAINTS_PER_YEAR[pop.segment] * (1 + 1.5 * (pop.health < -1)) / 365
    return _frozen(CustomerPool(
        customer_ids=np.asarray(pop.ids.to_pylist(), dtype=object),
        health=pop.health, interest=pop.interest, price_sensitivity=pop.price_sensitivity,
        band=pop.band, age=pop.age.astype(float), preferred=pop.preferred,
        consent=pop.consent.copy(),
        tenure_days=np.maximum(start_us - pop.created_us, 0) / DAY_US,
        financial=financial,
        eligible=eligibility_matrix(programs.limits, _facts(pop.band, pop.age, financial)),
        ideal_kind=ideal_kind(pop),
        churn_logit=np.where(existing, churn_logit, -np.inf),
        complaint_rate=complaints, programs=programs))


@lru_cache(maxsize=8)
def synthetic_pool(size: int, seed: int, days: int) -> CustomerPool:
    """The customers of ``ddso data generate --customers SIZE --seed SEED --days DAYS``.

    Exactly the generator's first chunk when it holds them all (``SIZE`` up to the default
    chunk size, 50,000); beyond that, the same population model drawn as one chunk. Cached:
    environments built with the same arguments share one read-only pool.
    """
    start = np.datetime64(POOL_START.isoformat(), "us")
    world = build_world(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))),
                        start, days)
    start_us = int(start.astype(np.int64))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, 0)))
    pop = draw_population(rng, world, 0, size, start_us, days, seed)
    return pool_from_population(pop, ProgramTable.from_world(world), start_us)


def pool_from_tables(customers: pa.Table | pd.DataFrame, profiles: pa.Table,
                     programs: ProgramTable, as_of: date, rng: np.random.Generator
                     ) -> CustomerPool:
    """A pool of real customers: warehouse ``customers`` rows and their financial profiles.

    Features come from the platform's own functions (financial features, the scorecard band);
    the latent drivers no table holds are drawn with ``rng``: health around its band's
    :data:`BAND_HEALTH`, interest and price sensitivity from the population's averages.
    Profiles are matched to customers by ``customer_id``; a customer without one is an error.
    """
    cust = customers.to_pandas() if isinstance(customers, pa.Table) else customers
    feats = financial_features(profiles).drop_duplicates("customer_id", keep="last")
    feats = feats.set_index("customer_id").reindex(cust["customer_id"])
    missing = feats.index[feats["monthly_income"].isna()]
    if len(missing):
        raise ValueError(f"pool_from_tables: {len(missing)} customer(s) have no financial "
                         f"profile (first: {missing[0]!r}); pass a profile for every customer")
    financial = feats[list(FINANCIAL_FEATURES)].to_numpy(float)
    band = np.array([BAND_RANK[scorecard_band(health_score(dict(zip(
        FINANCIAL_FEATURES, row, strict=True)))).value] for row in financial])
    n = len(cust)
    age = float(as_of.year) - cust["birth_year"].to_numpy(float)
    preferred = cust["preferred_channel"].map({c: i for i, c in enumerate(CHANNELS)})
    consent = np.stack([cust[f"consent_{c}"].fillna(False).to_numpy(bool) for c in CHANNELS], 1)
    as_of_us = pd.Timestamp(as_of, tz="UTC")
    created = pd.to_datetime(cust["created_at"], utc=True)
    tenure = ((as_of_us - created).dt.total_seconds() / 86_400).clip(lower=0).to_numpy(float)
    health = BAND_HEALTH[band] + rng.normal(0, _BAND_NOISE, n)
    a = 2.0 * _REAL_INTEREST_MEAN / (1 - _REAL_INTEREST_MEAN)
    interest = rng.beta(a, 2.0, n)
    price_sensitivity = rng.beta(*_REAL_PRICE_SENSITIVITY, n)
    income = financial[:, FINANCIAL_FEATURES.index("monthly_income")]
    dti = financial[:, FINANCIAL_FEATURES.index("debt_to_income")]
    ideal = ideal_kind(SimpleNamespace(health=health, age=age, income=income, dti=dti))
    return _frozen(CustomerPool(
        customer_ids=cust["customer_id"].to_numpy(object), health=health, interest=interest,
        price_sensitivity=price_sensitivity, band=band, age=age,
        preferred=preferred.fillna(-1).to_numpy(np.int64), consent=consent, tenure_days=tenure,
        financial=financial, eligible=eligibility_matrix(programs.limits,
                                                         _facts(band, age, financial)),
        ideal_kind=ideal,
        churn_logit=np.where(tenure > 0, _REAL_CHURN_LOGIT - 0.3 * health, -np.inf),
        complaint_rate=_REAL_COMPLAINTS_PER_YEAR * (1 + 1.5 * (health < -1)) / 365,
        programs=programs))
