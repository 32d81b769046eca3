"""Customers: latent segment and drivers, demographics, contact pseudonyms and finances.

Everything downstream (behaviour, CRM, the program funnel, churn) reads the latent drivers
drawn here, and the financial profile is a noisy but faithful view of the latent financial
health, so that an assessment model can learn health back from the profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ddso.data.tables import build_table
from ddso.data.world import DAY_US, World
from ddso.pii import pseudonymise

SEGMENTS = ("loyal_high_value", "bargain_hunter", "browser", "financially_stressed",
            "dormant_at_risk", "new")
_SHARE = np.array([0.14, 0.22, 0.24, 0.14, 0.14, 0.12])
SESSIONS_PER_WEEK = np.array([0.40, 0.25, 0.22, 0.09, 0.05, 0.18])
CART_RATE = np.array([0.16, 0.10, 0.025, 0.05, 0.06, 0.09])  # per view
BUY_RATE = np.array([0.65, 0.45, 0.20, 0.30, 0.35, 0.45])  # per session with a cart
_PRICE_SENS = np.array([0.2, 0.8, 0.4, 0.6, 0.4, 0.45])
_HEALTH = np.array([0.8, 0.0, 0.2, -1.3, -0.4, 0.0])
_INTEREST = np.array([0.25, 0.30, 0.15, 0.55, 0.12, 0.35])
CHURN_LOGIT = np.array([-4.5, -3.2, -3.0, -2.6, -1.0, -9.0])  # new customers do not churn
COMPLAINTS_PER_YEAR = np.array([0.04, 0.08, 0.03, 0.30, 0.25, 0.05])
INBOUND_CALLS_PER_YEAR = np.array([0.8, 0.4, 0.3, 1.5, 0.3, 0.8])
NEW = SEGMENTS.index("new")

# The generator's own HMAC key: synthetic contacts are pseudonymised like real ones, so that
# raw contact strings never reach a file even though they are made up.
GENERATOR_PII_KEY = b"ddso-synthetic-generator-v1"
CHANNELS = ("email", "sms", "call", "app_push")
_DEBT_KINDS = ("mortgage", "credit_card", "personal_loan", "auto_loan", "student_loan", "other")
_DEBT_MONTHS = np.array([180.0, 24.0, 30.0, 36.0, 80.0, 18.0])
_INCOME_KINDS = ("salary", "self_employed", "pension", "benefits", "rental", "other")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Population:
    """One chunk of customers: latent drivers and the observables derived from them."""

    ids: pa.Array  # customer_id strings
    segment: np.ndarray
    health: np.ndarray  # latent financial health (z-score, higher is healthier)
    band: np.ndarray  # 0=A .. 4=E, the health an assessment would see
    interest: np.ndarray  # latent interest in financial programs, 0..1
    price_sensitivity: np.ndarray
    activity: np.ndarray  # heavy-tailed activity multiplier, mean 1
    affinity: np.ndarray  # (n, categories) choice probabilities, programs last
    created_us: np.ndarray
    age: np.ndarray
    city: np.ndarray  # index into World.city_ids
    preferred: np.ndarray  # index into CHANNELS
    consent: np.ndarray  # (n, 4) bool, CHANNELS order
    income: np.ndarray  # monthly
    dti: np.ndarray  # monthly debt payments / income
    columns: dict  # customers-table columns except lifecycle_stage
    profiles: pa.Table


def _profiles(rng: np.random.Generator, ids: pa.Array, health: np.ndarray, age: np.ndarray,
              as_of: np.ndarray) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    n = len(health)
    # Income streams: one primary, sometimes a second and third smaller one.
    n_inc = 1 + (rng.random(n) < 0.3) + (rng.random(n) < 0.08)
    owner = np.repeat(np.arange(n), n_inc)
    first = np.r_[True, owner[1:] != owner[:-1]]
    primary_kind = np.where(age >= 66, 2, np.where(rng.random(n) < 0.12, 1,
                            np.where(health < -1.5, 3, 0)))
    kind = np.where(first, primary_kind[owner], rng.choice([1, 4, 5, 3], len(owner),
                                                             p=[0.3, 0.3, 0.3, 0.1]))
    amount = rng.lognormal(7.8 + 0.28 * health[owner], 0.4) * np.where(first, 1.0, 0.25)
    stability = np.clip(sigmoid(1.5 + 0.9 * health[owner] + rng.normal(0, 0.5, len(owner))
                                 - 0.8 * (kind == 1)), 0, 1)
    months = np.minimum(rng.integers(3, 240, len(owner)), (age[owner] - 17) * 12)
    income = np.bincount(owner, weights=amount, minlength=n)
    # Debts: the stressed carry more of them and spend more of their income servicing them.
    n_debt = np.minimum(rng.poisson(np.clip(1.3 - 0.5 * health, 0.2, 4)), 6)
    dti_target = np.exp(-1.5 - 0.45 * health + rng.normal(0, 0.3, n)) * (n_debt > 0)
    downer = np.repeat(np.arange(n), n_debt)
    dkind = rng.choice(6, len(downer), p=[0.15, 0.35, 0.2, 0.15, 0.1, 0.05])
    share = rng.exponential(1.0, len(downer))
    share /= np.bincount(downer, weights=share, minlength=n)[downer]
    payment = income[downer] * dti_target[downer] * share
    balance = payment * _DEBT_MONTHS[dkind] * rng.uniform(0.3, 1.0, len(downer))
    util = np.clip(sigmoid(0.2 - 1.3 * health[downer] + rng.normal(0, 0.5, len(downer))),
                   0.02, 0.99)
    revolving = dkind == 1
    limit = pa.array(np.round(balance / util, 2), mask=~revolving)
    dti = np.bincount(downer, weights=payment, minlength=n) / income
    due = 12 * n_debt
    on_time = rng.binomial(due, sigmoid(3.0 + 1.8 * health))
    delinquencies = rng.poisson(np.exp(-2.0 - 1.4 * health) * (n_debt > 0))
    savings = np.round(rng.lognormal(7.3 + 1.0 * health, 1.0) * (rng.random(n) > 0.1), 2)

    def nested(owner_of: np.ndarray, fields: dict) -> pa.Array:
        offsets = np.r_[0, np.cumsum(np.bincount(owner_of, minlength=n))].astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.StructArray.from_arrays(
            list(fields.values()), names=list(fields)))

    table = build_table("financial_profiles", {
        "customer_id": ids,
        "as_of": as_of,
        "income_streams": nested(owner, {
            "kind": pa.array(_INCOME_KINDS).take(pa.array(kind)),
            "monthly_amount": pa.array(np.round(amount, 2)),
            "months_observed": pa.array(months.astype(np.int64)),
            "stability": pa.array(np.round(stability, 3))}),
        "debts": nested(downer, {
            "kind": pa.array(_DEBT_KINDS).take(pa.array(dkind)),
            "balance": pa.array(np.round(balance, 2)),
            "monthly_payment": pa.array(np.round(payment, 2)),
            "credit_limit": limit}),
        "savings_balance": savings,
        "payments_due_12m": due.astype(np.int64),
        "payments_on_time_12m": on_time.astype(np.int64),
        "delinquencies_24m": delinquencies.astype(np.int64),
    })
    return table, income, dti


def draw_population(rng: np.random.Generator, world: World, first_index: int, n: int,
                    start_us: int, days: int, seed: int) -> Population:
    """Draw ``n`` customers numbered from ``first_index``."""
    ids = pc.binary_join_element_wise(
        "c", pc.utf8_lpad(pc.cast(pa.array(np.arange(first_index, first_index + n)),
                                  pa.string()), 8, "0"), "")
    seg = rng.choice(len(SEGMENTS), n, p=_SHARE)
    health = _HEALTH[seg] + rng.normal(0, 0.8, n)
    band = np.digitize(-(health + rng.normal(0, 0.35, n)), [-0.9, -0.3, 0.4, 1.1])
    interest = rng.beta(2.0 * _INTEREST[seg] / (1 - _INTEREST[seg]), 2.0)
    price_sens = rng.beta(4 * _PRICE_SENS[seg], 4 * (1 - _PRICE_SENS[seg]))
    activity = rng.lognormal(-0.5, 1.0, n)  # mean 1, heavy right tail
    n_cat = world.catalogue.n_retail_categories
    # Category tastes: segment-level Dirichlet draws shared by the chunk's segment, perturbed
    # per customer; interest in programs raises the weight of the programs' pages.
    seg_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    seg_taste = seg_rng.dirichlet(np.full(n_cat, 1.5), len(SEGMENTS))
    taste = rng.gamma(seg_taste[seg] * 8 + 0.05)
    taste = taste / taste.sum(1, keepdims=True) * (1 - 0.2 * interest[:, None])
    taste = np.c_[taste, 0.2 * interest]
    age = np.clip(rng.normal(42 - 12 * (seg == NEW) + 6 * (seg == 4), 14, n), 18, 90).astype(int)
    window_us = days * DAY_US
    created = np.where(seg == NEW, start_us + rng.integers(0, window_us, n),
                       start_us - (rng.lognormal(6.5, 0.9, n) * DAY_US).astype(np.int64))
    has_email, has_phone = rng.random(n) < 0.92, rng.random(n) < 0.85
    pref_p = np.where(age[:, None] < 35, [0.25, 0.25, 0.1, 0.4], [0.4, 0.15, 0.3, 0.15])
    preferred = (rng.random(n)[:, None] > np.cumsum(pref_p, 1)).sum(1)
    consent = rng.random((n, 4)) < np.where(np.arange(4)[None, :] == preferred[:, None], 0.9, 0.4)
    consent[:, 0] &= has_email
    consent[:, 1:3] &= has_phone[:, None]
    emails = [pseudonymise(f"customer{i}.{seed}@example.test", GENERATOR_PII_KEY, kind="email")
              for i in range(first_index, first_index + n)]
    phones = [pseudonymise(f"+4470{seed % 1000:03d}{i:08d}", GENERATOR_PII_KEY, kind="phone")
              for i in range(first_index, first_index + n)]
    as_of = np.maximum(created, start_us)
    profiles, income, dti = _profiles(rng, ids, health, age, as_of)
    start_year = int(np.datetime64(start_us, "us").astype("datetime64[Y]").astype(int) + 1970)
    city = rng.choice(len(world.city_ids), n, p=world.city_weight)
    columns = {
        "customer_id": ids,
        "created_at": created,
        "birth_year": (start_year - age).astype(np.int64),
        "gender": pa.array(["f", "m", "x", "unknown"]).take(
            pa.array(rng.choice(4, n, p=[0.48, 0.47, 0.01, 0.04]))),
        "city_id": pa.array(world.city_ids).take(pa.array(city)),
        "email_pseudonym": pa.array(emails, mask=~has_email),
        "phone_pseudonym": pa.array(phones, mask=~has_phone),
        "preferred_channel": pa.array(CHANNELS).take(pa.array(preferred)),
        **{f"consent_{c}": consent[:, i] for i, c in enumerate(CHANNELS)},
        "consent_profiling": rng.random(n) < 0.75,
        "acquisition_source": pa.array(["web", "app", "branch", "partner", "referral",
                                        "campaign"]).take(pa.array(rng.choice(
                                            6, n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1]))),
    }
    return Population(ids=ids, segment=seg, health=health, band=band, interest=interest,
                      price_sensitivity=price_sens, activity=activity, affinity=taste,
                      created_us=created, age=age, city=city,
                      preferred=preferred, consent=consent, income=income, dti=dti,
                      columns=columns, profiles=profiles)
