"""Policies compared on the customer-journey environment, with 95% confidence intervals.

Every policy runs the same ``episodes`` customers (the first rows of a pool, one episode
each) through the vector environment with the same seed, so differences come from the
policies and not from whom they met. Per customer we record whether they enrolled
(conversion), graduated, churned or complained, how many contacts they got and their
return; then, per policy:

* rates (conversion, graduation, churn, complaints) with Wilson 95% intervals;
* means (contacts per customer, return) with normal 95% intervals;
* uplift against the baseline (business as usual): the paired per-customer difference with a
  normal 95% interval, and for non-negative metrics the relative uplift ``policy / baseline
  - 1`` with a delta-method interval.

A stateful policy (one with ``update(obs, actions, rewards)``, e.g.
:class:`~rl_env.policies.LinUCB`) learns online: it is updated after every step with the
observations it acted on, its actions and their rewards (customers still in their episode).

:func:`baseline_policies` builds the baselines: no contact, random (business-as-usual
volume), business as usual, greedy on an XGBoost propensity model and LinUCB; a trained
policy joins them as a :class:`~rl_env.export.NumpyPolicy`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ddso.errors import UserError
from rl_env.cohort import wilson_interval
from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool, synthetic_pool
from rl_env.policies import (
    BusinessAsUsual,
    LinUCB,
    NoContact,
    RandomMasked,
    fit_greedy_propensity,
)
from rl_env.vector import CustomerJourneyVectorEnv

Policy = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
RATES: dict[str, str] = {"conversion": "enrolled", "graduation": "graduated",
                         "churn": "churned", "complaints": "complained"}
"""Rate metrics and the per-step event that counts a customer in."""
MEANS = ("contacts_per_customer", "return")
METRICS = (*RATES, *MEANS)
BASELINE = "business_as_usual"
Z95 = 1.959964


@dataclass(frozen=True)
class Outcomes:
    """Per-customer outcomes of one episode each (arrays of length ``customers``)."""

    enrolled: np.ndarray
    graduated: np.ndarray
    churned: np.ndarray
    complained: np.ndarray
    contacts: np.ndarray
    returns: np.ndarray
    steps: int
    wall_s: float

    def metric(self, name: str) -> np.ndarray:
        """Per-customer values of a metric of :data:`METRICS` (0/1 for rates)."""
        if name in RATES:
            return getattr(self, RATES[name]).astype(np.float64)
        return (self.contacts if name == "contacts_per_customer" else self.returns).astype(
            np.float64)


def run_episodes(policy: Policy, config: JourneyConfig, pool: CustomerPool, customers: int,
                 seed: int) -> Outcomes:
    """Pool rows ``0..customers-1`` through one episode each under ``policy`` (seeded)."""
    if customers > pool.size:
        raise ValueError(f"customers={customers}: the pool holds only {pool.size}")
    began = time.perf_counter()
    env = CustomerJourneyVectorEnv(customers, config.with_overrides(observation_mode="box"),
                                   pool=pool)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    obs, info = env.reset(seed=seed, options={"customers": np.arange(customers)})
    learns = callable(getattr(policy, "update", None))
    running = np.ones(customers, bool)
    ever = {event: np.zeros(customers, bool) for event in RATES.values()}
    contacts = np.zeros(customers, np.int64)
    returns = np.zeros(customers)
    steps = 0
    while running.any():
        actions = policy(obs, info["action_mask"], rng)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        if learns:
            policy.update(obs[running], actions[running], reward[running])
        for event, seen in ever.items():
            seen |= info[event] & running
        contacts += info["contacted"] & running
        returns += reward * running
        running &= ~(terminated | truncated)
        obs = next_obs
        steps += 1
    env.close()
    return Outcomes(**ever, contacts=contacts, returns=returns, steps=steps,
                    wall_s=time.perf_counter() - began)


def _interval(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": float(value), "low": float(low), "high": float(high)}


def summarize(outcomes: Outcomes) -> dict[str, dict[str, float]]:
    """Each metric with its 95% interval (Wilson for rates, normal for means)."""
    out = {}
    for name in METRICS:
        x = outcomes.metric(name)
        n = len(x)
        if name in RATES:
            low, high = wilson_interval(int(x.sum()), n, z=Z95)
            # At 0 or 1 the closed form's rounding can put the bound past the estimate.
            out[name] = _interval(x.mean(), min(low, x.mean()), max(high, x.mean()))
        else:
            half = Z95 * x.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
            out[name] = _interval(x.mean(), x.mean() - half, x.mean() + half)
    return out


def uplift(policy: Outcomes, baseline: Outcomes) -> dict[str, dict[str, float | None]]:
    """Paired uplift of ``policy`` over ``baseline`` on the same customers, per metric."""
    out: dict[str, dict[str, float | None]] = {}
    for name in METRICS:
        p, b = policy.metric(name), baseline.metric(name)
        n = len(p)
        d = p - b
        half = Z95 * d.std(ddof=1) / np.sqrt(n)
        entry: dict[str, float | None] = {"diff": float(d.mean()),
                                          "low": float(d.mean() - half),
                                          "high": float(d.mean() + half),
                                          "relative": None, "relative_low": None,
                                          "relative_high": None}
        mp, mb = p.mean(), b.mean()
        if name != "return" and mb > 0:
            ratio = mp / mb
            cov = np.cov(p, b)
            var = (cov[0, 0] + ratio**2 * cov[1, 1] - 2 * ratio * cov[0, 1]) / (n * mb**2)
            half_r = Z95 * np.sqrt(max(var, 0.0))
            entry.update(relative=float(ratio - 1), relative_low=float(ratio - 1 - half_r),
                         relative_high=float(ratio - 1 + half_r))
        out[name] = entry
    return out


def evaluate(policies: Mapping[str, Policy], config: JourneyConfig, pool: CustomerPool,
             episodes: int, seed: int, baseline: str = BASELINE,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every policy on the same customers and seed; the report as plain data (JSON-able).

    numpy runs on one thread: BLAS threads on these small matrices cost more than they gain.
    """
    results: dict[str, Outcomes] = {}
    for name, policy in policies.items():
        with threadpool_limits(1):
            results[name] = run_episodes(policy, config, pool, episodes, seed)
        if progress is not None:
            progress(f"{name}: {episodes} episodes in {results[name].wall_s:.1f} s")
    report: dict[str, Any] = {
        "episodes": episodes, "seed": seed, "baseline": baseline if baseline in results else None,
        "policies": {name: {"metrics": summarize(o), "steps": o.steps,
                            "wall_s": round(o.wall_s, 3)} for name, o in results.items()},
        "uplift": {},
    }
    if baseline in results:
        report["uplift"] = {name: uplift(o, results[baseline]) for name, o in results.items()
                            if name != baseline}
    return report


def baseline_policies(config: JourneyConfig, train_pool: CustomerPool | None = None,
                      seed: int = 0, greedy_journeys: int = 20_000,
                      names: tuple[str, ...] | None = None) -> dict[str, Policy]:
    """The baselines, by name: ``no_contact``, ``random``, ``business_as_usual``,
    ``greedy_propensity`` and ``linucb`` (or the subset ``names``).

    ``random`` contacts at business-as-usual volume (``2 / horizon_days`` of days) with a
    uniformly random allowed action; ``greedy_propensity`` is fitted on ``greedy_journeys``
    logged journeys of ``train_pool`` (default: the configuration's pool), never on the
    customers it is evaluated on.
    """
    train_pool = train_pool if train_pool is not None else synthetic_pool(
        config.pool_size, config.pool_seed, config.horizon_days)
    programs = train_pool.programs
    makers: dict[str, Callable[[], Policy]] = {
        "no_contact": NoContact,
        "random": lambda: RandomMasked(contact_share=2.0 / config.horizon_days),
        "business_as_usual": lambda: BusinessAsUsual(programs, config.horizon_days),
        "greedy_propensity": lambda: fit_greedy_propensity(config, train_pool,
                                                           journeys=greedy_journeys, seed=seed),
        "linucb": lambda: LinUCB(programs),
    }
    unknown = sorted(set(names or ()) - set(makers))
    if unknown:
        raise UserError(f"unknown policy name(s) {unknown}; choose from {sorted(makers)}")
    return {name: make() for name, make in makers.items() if names is None or name in names}


def _cell(metric: str, value: float, low: float, high: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if metric in RATES:
        unit = "pp" if signed else "%"
        return (f"{100 * value:{sign}.2f}{unit} [{100 * low:{sign}.2f}, "
                f"{100 * high:{sign}.2f}]")
    return f"{value:{sign}.4f} [{low:{sign}.4f}, {high:{sign}.4f}]"


def format_report(report: dict[str, Any]) -> str:
    """The report as a text table: per metric, each policy's value and its uplift."""
    baseline = report["baseline"]
    lines = [f"{report['episodes']} episodes per policy, seed {report['seed']}; 95% intervals"
             + (f"; uplift: paired difference against {baseline}" if baseline else "")]
    head = (f"{'metric':<23}{'policy':<20}{'value [95% CI]':>30}{'uplift [95% CI]':>34}"
            f"{'relative [95% CI]':>28}")
    lines += [head, "-" * len(head)]
    for metric in METRICS:
        for i, (name, entry) in enumerate(report["policies"].items()):
            v = entry["metrics"][metric]
            row = (f"{metric if i == 0 else '':<23}{name:<20}"
                   f"{_cell(metric, v['value'], v['low'], v['high']):>30}")
            u = report["uplift"].get(name, {}).get(metric)
            if u is not None:
                row += f"{_cell(metric, u['diff'], u['low'], u['high'], signed=True):>34}"
                if u["relative"] is not None:
                    row += (f"{100 * u['relative']:+.1f}% [{100 * u['relative_low']:+.1f}, "
                            f"{100 * u['relative_high']:+.1f}]").rjust(28)
            lines.append(row)
    return "\n".join(lines)
