"""Fitting the environment's response model to logged events: ``ddso rl calibrate``.

The input is a dataset in the layout ``ddso data generate`` writes (``events/`` and
``warehouse/{customers,financial_profiles,products}``; ``truth/customers`` if present), the
generator's or a user's own. Three models of :class:`rl_env.config.ResponseModel` are fitted
by maximum likelihood, each reported against the environment's defaults:

* **offers** (``offer_shown`` rows): a contact qualifies the lead with
  ``sigmoid(qualify_intercept + qualify_interest * interest + qualify_preferred_channel *
  preferred + qualify_fit * fit + qualify_health * health)`` and a qualified lead accepts
  with ``sigmoid(accept_intercept + accept_interest * interest + accept_fit * fit +
  accept_health * health - price_weight * price_sensitivity * log(monthly / reference))``.
  An ``offer_accepted`` with the offer's ``offer_id`` is an acceptance; a ``crm_call`` or
  ``crm_email`` of the same customer on the offer's channel within a second after it is its
  trace: outcome ``positive`` means qualified, anything else not. Without an acceptance or a
  trace, the offer counts as "not both".
* **graduation** (programs that ended: :func:`ddso.features.labels.program_spine`):
  ``sigmoid(graduate_intercept + graduate_health * health + graduate_fit * fit +
  graduate_interest * interest)``.
* **late payments** (``program_payment`` rows, late when ``days_late > 0``):
  ``sigmoid(late_payment_intercept + late_payment_health * health)``.

Latent drivers: with ``truth/customers`` (the generator writes it) health, interest, price
sensitivity and the ideal program kind are read from it, and every coefficient is free.
Without it (``latents="observed"``) health is the representative health of the customer's
scorecard band (:data:`rl_env.customers.BAND_HEALTH`), fit is the advised kind
(:func:`rl_env.policies.advised_kind`'s rule), price sensitivity its population mean, and
interest is integrated out over the population prior per customer (Gauss quadrature on a
Beta with mean 0.27), with the interest weights held at the environment's defaults, where
they would be unidentified; graduation then uses each customer's posterior mean interest.

Fit quality: log-likelihood at the fit, under the environment's defaults and under an
intercept-only model (McFadden's R squared), and predicted against observed rates overall,
per channel and per decile of predicted acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats
from scipy.optimize import minimize

from ddso.data.funnel import ideal_kind
from ddso.data.population import CHANNELS
from ddso.data.world import PROGRAM_KINDS
from ddso.errors import DataFileError, UserError
from ddso.features.financial import FEATURE_COLUMNS as FINANCIAL_FEATURES
from ddso.features.financial import financial_features
from ddso.features.labels import program_spine
from ddso.models.scorecard import band as scorecard_band
from ddso.models.scorecard import health_score
from ddso.policy.eligibility import BAND_RANK
from ddso.stores.offline import OfflineStore
from rl_env.config import ResponseModel
from rl_env.customers import BAND_HEALTH

EVENT_TYPES = ("offer_shown", "offer_accepted", "crm_call", "crm_email", "enrollment",
               "program_payment", "graduation", "dropout")
EVENT_FIELDS = ("customer_id", "type", "event_time", "product_id", "channel", "offer_id",
                "enrollment_id", "days_late", "outcome", "reason")
OFFER_PARAMS = ("qualify_intercept", "qualify_interest", "qualify_preferred_channel",
                "qualify_fit", "qualify_health", "accept_intercept", "accept_interest",
                "accept_fit", "accept_health", "price_weight")
GRADUATE_PARAMS = ("graduate_intercept", "graduate_health", "graduate_fit", "graduate_interest")
LATE_PARAMS = ("late_payment_intercept", "late_payment_health")
LATENT_WEIGHTS = ("qualify_interest", "accept_interest", "graduate_interest")
"""Held at the environment's defaults when interest is not observed."""
_TRACES = {"crm_call": "call", "crm_email": "email"}
_TRACE_WITHIN = pd.Timedelta(seconds=1)
_INTEREST_MEAN = 0.27
_PRICE_SENSITIVITY_MEAN = 0.5
_NODES = 16
_Z95 = 1.959964


@dataclass(frozen=True)
class CalibrationData:
    """Per-row arrays of the three models; ``interest`` is (customers, nodes) with weights."""

    latents: str
    offer_customer: np.ndarray
    preferred: np.ndarray
    offer_fit: np.ndarray
    offer_health: np.ndarray
    price_term: np.ndarray
    """``price_sensitivity * log(monthly payment / reference)``."""
    accepted: np.ndarray
    qualified: np.ndarray
    """1 qualified, 0 not, -1 no trace."""
    channel: np.ndarray
    interest: np.ndarray
    weights: np.ndarray
    program_customer: np.ndarray
    program_health: np.ndarray
    program_fit: np.ndarray
    graduated: np.ndarray
    payment_health: np.ndarray
    late: np.ndarray


def _warehouse(root: Path, name: str, columns: list[str] | None) -> pd.DataFrame:
    folder = root / "warehouse" / name
    if not folder.exists():
        raise DataFileError(f"{folder}: not found; calibrate reads a dataset in the layout of "
                            "`ddso data generate` (events/ and warehouse/)")
    try:
        return pq.read_table(folder, columns=columns).to_pandas()
    except (OSError, pa.ArrowException, KeyError) as e:
        raise DataFileError(f"{folder}: cannot read columns {columns} ({e}); each is required"
                            ) from None


def _events(root: Path) -> pd.DataFrame:
    store = OfflineStore(root)
    if not store.events_dir.exists():
        raise DataFileError(f"{store.events_dir}: not found; pass a dataset folder with events/")
    schema = store.dataset().schema
    missing = [c for c in EVENT_FIELDS if c not in schema.names]
    if missing:
        raise DataFileError(f"{store.events_dir}: event field(s) {missing} missing; offers need "
                            "offer_id, product_id and channel, traces an outcome")
    return store.read(columns=list(EVENT_FIELDS), types=list(EVENT_TYPES)).to_pandas()


def _observed_customers(customers: pd.DataFrame, profiles: pd.DataFrame, year: int
                        ) -> pd.DataFrame:
    """Band, age, income and debt-to-income of each customer, as the platform sees them."""
    feats = financial_features(profiles).drop_duplicates("customer_id", keep="last")
    feats = feats.set_index("customer_id").reindex(customers["customer_id"])
    if feats["monthly_income"].isna().any():
        missing = feats.index[feats["monthly_income"].isna()][0]
        raise DataFileError(f"warehouse/financial_profiles: no profile for customer {missing!r}; "
                            "every customer needs one")
    rows = feats[list(FINANCIAL_FEATURES)].to_numpy(float)
    band = np.array([BAND_RANK[scorecard_band(health_score(dict(zip(
        FINANCIAL_FEATURES, row, strict=True)))).value] for row in rows])
    return pd.DataFrame({"band": band, "age": year - customers["birth_year"].to_numpy(float),
                         "income": feats["monthly_income"].to_numpy(float),
                         "dti": feats["debt_to_income"].to_numpy(float)})


def _interest_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-weight quantile nodes of the population's interest prior, for ``n`` customers."""
    a = 2.0 * _INTEREST_MEAN / (1 - _INTEREST_MEAN)
    nodes = stats.beta(a, 2.0).ppf((np.arange(_NODES) + 0.5) / _NODES)
    return np.tile(nodes, (n, 1)), np.full(_NODES, 1.0 / _NODES)


def load_calibration_data(root: str | Path, latents: str = "auto") -> CalibrationData:
    """Offers, programs and payments of a dataset as model inputs (see module docstring)."""
    root = Path(root)
    if latents not in ("auto", "truth", "observed"):
        raise UserError(f"latents={latents!r}: choose 'auto', 'truth' or 'observed'")
    truth_dir = root / "truth" / "customers"
    if latents == "truth" and not truth_dir.exists():
        raise DataFileError(f"{truth_dir}: not found; latents='truth' needs the generator's "
                            "truth table (use latents='observed' for your own data)")
    use_truth = latents == "truth" or (latents == "auto" and truth_dir.exists())
    events = _events(root)
    customers = _warehouse(root, "customers", ["customer_id", "birth_year",
                                               "preferred_channel"])
    products = _warehouse(root, "products", ["product_id", "price", "program_kind",
                                             "program_months"]).set_index("product_id")
    cindex = pd.Index(customers["customer_id"])

    offers = events[events["type"] == "offer_shown"].reset_index(drop=True)
    if not len(offers):
        raise DataFileError(f"{root / 'events'}: no offer_shown events to calibrate on")
    for name in ("offer_id", "product_id", "channel"):
        if offers[name].isna().any():
            who = offers.loc[offers[name].isna(), "customer_id"].iloc[0]
            raise DataFileError(f"{root / 'events'}: offer_shown event without {name} "
                                f"(customer {who!r}); every offer needs one")
    bad_channel = ~offers["channel"].isin(CHANNELS)
    if bad_channel.any():
        value = offers.loc[bad_channel, "channel"].iloc[0]
        raise DataFileError(f"{root / 'events'}: offer_shown channel {value!r} is not one of "
                            f"{CHANNELS}")
    known = products.reindex(offers["product_id"])
    unknown = known["program_kind"].isna().to_numpy()
    if unknown.any():
        raise DataFileError(f"{root / 'warehouse/products'}: offered product "
                            f"{offers['product_id'][unknown].iloc[0]!r} is missing or has no "
                            "program_kind")
    cust = cindex.get_indexer(offers["customer_id"])
    if (cust < 0).any():
        raise DataFileError(f"{root / 'warehouse/customers'}: no customer "
                            f"{offers['customer_id'][cust < 0].iloc[0]!r} (named by an offer)")
    kind_of = {k: i for i, k in enumerate(PROGRAM_KINDS)}
    offer_kind = known["program_kind"].map(kind_of).to_numpy()
    monthly = (known["price"] / known["program_months"]).to_numpy(float)

    year = int(pd.to_datetime(offers["event_time"]).dt.year.min())
    seen = _observed_customers(customers, _warehouse(
        root, "financial_profiles", None), year) if not use_truth else None
    if use_truth:
        truth = pq.read_table(truth_dir).to_pandas().set_index("customer_id").reindex(cindex)
        health = truth["financial_health"].to_numpy(float)
        ideal = truth["ideal_program_kind"].map(kind_of).to_numpy()
        sensitivity = truth["price_sensitivity"].to_numpy(float)
        interest, weights = truth["program_interest"].to_numpy(float)[:, None], np.ones(1)
    else:
        health = BAND_HEALTH[seen["band"].to_numpy()]
        ideal = ideal_kind(SimpleNamespace(health=health, age=seen["age"].to_numpy(),
                                           income=seen["income"].to_numpy(),
                                           dti=seen["dti"].to_numpy()))
        sensitivity = np.full(len(cindex), _PRICE_SENSITIVITY_MEAN)
        interest, weights = _interest_nodes(len(cindex))

    accepted_ids = set(events.loc[events["type"] == "offer_accepted", "offer_id"].dropna())
    preferred = (offers["channel"].to_numpy()
                 == customers["preferred_channel"].to_numpy()[cust])
    reference = ResponseModel().reference_monthly_payment
    programs = program_spine(events)
    pcust = cindex.get_indexer(programs["customer_id"])
    pkind = products.reindex(programs["product_id"])["program_kind"].map(kind_of).to_numpy()
    payments = events[events["type"] == "program_payment"]
    paycust = cindex.get_indexer(payments["customer_id"])
    return CalibrationData(
        latents="truth" if use_truth else "observed",
        offer_customer=cust, preferred=preferred.astype(float),
        offer_fit=(offer_kind == ideal[cust]).astype(float), offer_health=health[cust],
        price_term=sensitivity[cust] * np.log(monthly / reference),
        accepted=offers["offer_id"].isin(accepted_ids).to_numpy().astype(float),
        qualified=_traced_qualification(offers, events), channel=offers["channel"].to_numpy(),
        interest=interest, weights=weights,
        program_customer=pcust, program_health=health[pcust],
        program_fit=(pkind == ideal[pcust]).astype(float),
        graduated=programs["graduated"].to_numpy(float),
        payment_health=health[paycust[paycust >= 0]],
        late=(payments["days_late"].fillna(0).to_numpy() > 0)[paycust >= 0].astype(float))


def _traced_qualification(offers: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Per offer: 1/0 if a CRM call or e-mail on its channel traced it, -1 if none did."""
    traces = events[events["type"].isin(list(_TRACES))].copy()
    traces["channel"] = traces["type"].map(_TRACES)
    left = offers[["customer_id", "channel", "event_time"]].assign(row=np.arange(len(offers)))
    left = left.sort_values("event_time")
    right = traces[["customer_id", "channel", "event_time", "outcome"]].sort_values("event_time")
    joined = pd.merge_asof(left, right, on="event_time", by=["customer_id", "channel"],
                           direction="forward", tolerance=_TRACE_WITHIN, allow_exact_matches=False)
    out = np.full(len(offers), -1.0)
    hit = joined["outcome"].notna().to_numpy()
    out[joined["row"].to_numpy()[hit]] = (joined["outcome"].to_numpy()[hit] == "positive")
    return out


# --- likelihoods ------------------------------------------------------------------------------


def _offer_loglik(theta: dict[str, Any], d: CalibrationData, torch: Any, per_customer: bool
                  ) -> Any:
    """Log-likelihood of the offers (a torch scalar), interest integrated per customer."""
    t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in (
        ("interest", d.interest[d.offer_customer]), ("pref", d.preferred[:, None]),
        ("fit", d.offer_fit[:, None]), ("health", d.offer_health[:, None]),
        ("price", d.price_term[:, None]), ("acc", d.accepted[:, None]),
        ("qual", d.qualified[:, None]))}
    q = (theta["qualify_intercept"] + theta["qualify_interest"] * t["interest"]
         + theta["qualify_preferred_channel"] * t["pref"] + theta["qualify_fit"] * t["fit"]
         + theta["qualify_health"] * t["health"])
    a = (theta["accept_intercept"] + theta["accept_interest"] * t["interest"]
         + theta["accept_fit"] * t["fit"] + theta["accept_health"] * t["health"]
         - theta["price_weight"] * t["price"])
    logsig = torch.nn.functional.logsigmoid
    log_q, log_not_q, log_a, log_not_a = logsig(q), logsig(-q), logsig(a), logsig(-a)
    both = log_q + log_a
    not_both = torch.log1p(-torch.exp(both).clamp(max=1 - 1e-12))
    ll = torch.where(t["acc"] > 0, both,
                     torch.where(t["qual"] == 1, log_q + log_not_a,
                                 torch.where(t["qual"] == 0, log_not_q, not_both)))
    n_customers = d.interest.shape[0]
    by_customer = torch.zeros((n_customers, ll.shape[1]), dtype=torch.float64).index_add(
        0, torch.as_tensor(d.offer_customer), ll)
    joint = by_customer + torch.log(torch.as_tensor(d.weights, dtype=torch.float64))
    return joint if per_customer else torch.logsumexp(joint, 1).sum()


def _logit_loglik(theta: dict[str, Any], names: tuple[str, ...], x: np.ndarray, y: np.ndarray,
                  torch: Any) -> Any:
    z = sum(theta[n] * torch.as_tensor(x[:, i], dtype=torch.float64)
            for i, n in enumerate(names))
    yt = torch.as_tensor(y, dtype=torch.float64)
    logsig = torch.nn.functional.logsigmoid
    return (yt * logsig(z) + (1 - yt) * logsig(-z)).sum()


def _fit(loglik, names: tuple[str, ...], start: dict[str, float], free: set[str]
         ) -> dict[str, Any]:
    """Maximum likelihood over ``free`` names (others held at ``start``); SEs from the Hessian."""
    import torch

    free_names = [n for n in names if n in free]

    def theta_of(x):
        theta = {n: torch.tensor(start[n], dtype=torch.float64) for n in names}
        theta.update({n: x[i] for i, n in enumerate(free_names)})
        return theta

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = -loglik(theta_of(xt))
        value.backward()
        return float(value.detach()), xt.grad.numpy().copy()

    x0 = np.array([start[n] for n in free_names])
    result = minimize(objective, x0, jac=True, method="L-BFGS-B")
    hessian = torch.autograd.functional.hessian(
        lambda x: -loglik(theta_of(x)), torch.tensor(result.x, dtype=torch.float64)).numpy()
    try:
        cov = np.linalg.inv(hessian)
        se = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    except np.linalg.LinAlgError:
        se = np.full(len(free_names), np.nan)
    values = dict(start)
    values.update(dict(zip(free_names, result.x.tolist(), strict=True)))
    return {"values": values, "se": dict(zip(free_names, se.tolist(), strict=True)),
            "loglik": -float(result.fun), "converged": bool(result.success)}


def _defaults() -> dict[str, float]:
    model = ResponseModel()
    return {f.name: getattr(model, f.name) for f in fields(model)
            if isinstance(getattr(model, f.name), float)}


def _rate(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {"n": int(len(observed)), "observed": float(np.mean(observed)) if len(observed) else 0.0,
            "predicted": float(np.mean(predicted)) if len(predicted) else 0.0}


def calibrate(root: str | Path, latents: str = "auto") -> dict[str, Any]:
    """Fit the response model to the dataset at ``root``; the report as plain data."""
    import torch

    d = load_calibration_data(root, latents)
    defaults = _defaults()
    free = set(OFFER_PARAMS + GRADUATE_PARAMS + LATE_PARAMS)
    if d.latents == "observed":
        free -= set(LATENT_WEIGHTS)

    def offers_ll(theta):
        return _offer_loglik(theta, d, torch, per_customer=False)

    offers = _fit(offers_ll, OFFER_PARAMS, defaults, free)
    null_start = {**defaults, **{n: 0.0 for n in OFFER_PARAMS if not n.endswith("intercept")}}
    offers_null = _fit(offers_ll, OFFER_PARAMS, null_start,
                       {"qualify_intercept", "accept_intercept"})
    theta = {n: torch.tensor(offers["values"][n], dtype=torch.float64) for n in OFFER_PARAMS}
    with torch.no_grad():
        joint = _offer_loglik(theta, d, torch, per_customer=True).numpy()
        env_ll = float(offers_ll({n: torch.tensor(defaults[n], dtype=torch.float64)
                                  for n in OFFER_PARAMS}))
    posterior = np.exp(joint - joint.max(1, keepdims=True))
    posterior /= posterior.sum(1, keepdims=True)
    mean_interest = (posterior * d.interest).sum(1)

    grad_x = np.column_stack([np.ones(len(d.graduated)), d.program_health, d.program_fit,
                              mean_interest[d.program_customer]])
    late_x = np.column_stack([np.ones(len(d.late)), d.payment_health])
    models = {"offers": (offers, offers_null, env_ll, len(d.accepted))}
    for key, names, x, y in (("graduation", GRADUATE_PARAMS, grad_x, d.graduated),
                             ("late_payment", LATE_PARAMS, late_x, d.late)):
        if not len(y):
            continue

        def ll(theta, names=names, x=x, y=y):
            return _logit_loglik(theta, names, x, y, torch)

        fitted = _fit(ll, names, defaults, free)
        null = _fit(ll, names, {**defaults, **{n: 0.0 for n in names[1:]}}, {names[0]})
        with torch.no_grad():
            env = float(ll({n: torch.tensor(defaults[n], dtype=torch.float64) for n in names}))
        models[key] = (fitted, null, env, len(y))

    parameters = {}
    for key, names in (("offers", OFFER_PARAMS), ("graduation", GRADUATE_PARAMS),
                       ("late_payment", LATE_PARAMS)):
        fitted = models[key][0] if key in models else {"values": defaults, "se": {}}
        for name in names:
            value, se = fitted["values"][name], fitted["se"].get(name)
            parameters[name] = {
                "model": key, "fitted": value, "env_default": defaults[name],
                "free": name in fitted["se"], "se": se,
                "low": None if se is None else value - _Z95 * se,
                "high": None if se is None else value + _Z95 * se}
    fit = {key: {"n": n, "loglik": m["loglik"], "loglik_env_defaults": env,
                 "loglik_intercepts_only": null["loglik"],
                 "mcfadden_r2": 1 - m["loglik"] / null["loglik"] if null["loglik"] else None,
                 "converged": m["converged"]}
           for key, (m, null, env, n) in models.items()}
    return {"dataset": str(Path(root)), "latents": d.latents,
            "counts": {"offers": int(len(d.accepted)), "accepted": int(d.accepted.sum()),
                       "traced": int((d.qualified >= 0).sum()),
                       "traced_qualified": int((d.qualified == 1).sum()),
                       "programs_ended": int(len(d.graduated)),
                       "graduated": int(d.graduated.sum()), "payments": int(len(d.late)),
                       "late_payments": int(d.late.sum())},
            "parameters": parameters, "fit": fit,
            "rates": _rates(d, offers["values"], models, grad_x, late_x),
            "response_overrides": {n: p["fitted"] for n, p in parameters.items() if p["free"]}}


def _rates(d: CalibrationData, v: dict[str, float], models: dict, grad_x: np.ndarray,
           late_x: np.ndarray) -> dict[str, Any]:
    """Predicted against observed rates: acceptance (overall, per channel, per decile),
    qualification on traced offers, graduation and late payments."""
    from scipy.special import expit

    interest = d.interest[d.offer_customer]
    fit, health = d.offer_fit[:, None], d.offer_health[:, None]
    q = expit(v["qualify_intercept"] + v["qualify_interest"] * interest
              + v["qualify_preferred_channel"] * d.preferred[:, None]
              + v["qualify_fit"] * fit + v["qualify_health"] * health)
    a = expit(v["accept_intercept"] + v["accept_interest"] * interest + v["accept_fit"] * fit
              + v["accept_health"] * health - v["price_weight"] * d.price_term[:, None])
    p_accept, p_qualify = (q * a) @ d.weights, q @ d.weights
    traced = d.qualified >= 0
    deciles = np.minimum((pd.Series(p_accept).rank(pct=True, method="first").to_numpy() * 10)
                         .astype(int), 9)
    out = {
        "acceptance": _rate(d.accepted, p_accept),
        "acceptance_by_channel": {c: _rate(d.accepted[d.channel == c], p_accept[d.channel == c])
                                  for c in CHANNELS if (d.channel == c).any()},
        "acceptance_by_decile": [{"decile": k + 1, **_rate(d.accepted[deciles == k],
                                                           p_accept[deciles == k])}
                                 for k in range(10)],
        "qualification_traced": _rate(d.qualified[traced], p_qualify[traced]),
    }
    for key, names, x, y in (("graduation", GRADUATE_PARAMS, grad_x, d.graduated),
                             ("late_payment", LATE_PARAMS, late_x, d.late)):
        if key in models:
            values = models[key][0]["values"]
            out[key] = _rate(y, expit(x @ np.array([values[n] for n in names])))
    return out


def format_calibration(report: dict[str, Any]) -> str:
    """The report as text: parameters against defaults, fit quality, predicted vs observed."""
    c = report["counts"]
    lines = [f"{report['dataset']}: {c['offers']} offers ({c['accepted']} accepted, "
             f"{c['traced']} traced, {c['traced_qualified']} qualified), {c['programs_ended']} "
             f"programs ended, {c['payments']} payments; latents: {report['latents']}",
             "", f"{'parameter':<28}{'fitted':>10}{'95% CI':>22}{'env default':>13}"]
    for name, p in report["parameters"].items():
        ci = (f"[{p['low']:.3f}, {p['high']:.3f}]" if p["free"] and p["se"] is not None
              and np.isfinite(p["se"]) else "(held)" if not p["free"] else "n/a")
        lines.append(f"{name:<28}{p['fitted']:>10.3f}{ci:>22}{p['env_default']:>13.3f}")
    lines += ["", f"{'model':<14}{'n':>8}{'loglik':>12}{'env defaults':>14}{'intercepts':>12}"
              f"{'McFadden R2':>13}"]
    for key, f in report["fit"].items():
        lines.append(f"{key:<14}{f['n']:>8}{f['loglik']:>12.1f}{f['loglik_env_defaults']:>14.1f}"
                     f"{f['loglik_intercepts_only']:>12.1f}{f['mcfadden_r2'] or 0:>13.3f}")
    lines += ["", f"{'rate':<28}{'n':>8}{'observed':>11}{'predicted':>11}"]
    r = report["rates"]
    rows = [("acceptance", r["acceptance"]), ("qualification (traced)",
                                              r["qualification_traced"]),
            *((f"acceptance, {ch}", v) for ch, v in r["acceptance_by_channel"].items()),
            *((f"acceptance, decile {b['decile']}", b) for b in r["acceptance_by_decile"]),
            *((key.replace("_", " "), r[key]) for key in ("graduation", "late_payment")
              if key in r)]
    for label, v in rows:
        lines.append(f"{label:<28}{v['n']:>8}{100 * v['observed']:>10.3f}%"
                     f"{100 * v['predicted']:>10.3f}%")
    return "\n".join(lines)
