"""Uplift of contacting, by segment, from the decisions an epsilon-greedy policy logged.

A decision contacted the customer when it chose a channel. The naive uplift compares the
outcome rate of contacted and not-contacted decisions; it is biased whenever the greedy rule
contacts customers who would have converted anyway. Every audited decision records the
exploration rate, the greedy action and the candidates, so the probability that the logging
policy contacts each customer is known exactly (:func:`decision_facts`), and inverse
propensity weights (:func:`ddso.policy.ope.snips` on a two-action log) remove that bias.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from ddso.errors import DataFileError
from ddso.policy.ope import Estimate, LoggedBandit, snips


def decision_facts(audit: pd.DataFrame) -> pd.DataFrame:
    """Per audited decision: the health ``band`` it saw and ``contact_p``, the probability
    that the epsilon-greedy logging policy contacts the customer,
    ``(1 - eps) * [greedy contacts] + eps * contact candidates / candidates`` (exploration only
    happens among two or more candidates)."""
    rows = []
    for decision_id, text in zip(audit["decision_id"], audit["decision"], strict=True):
        try:
            d = json.loads(text)
            candidates, greedy, eps = d["candidates"], d["greedy"], float(d["epsilon"])
            explore = eps if len(candidates) > 1 else 0.0
            contacts = sum(c[0] is not None for c in candidates)
            p = (1 - explore) * (greedy[0] is not None) + explore * contacts / len(candidates)
            band = (d.get("scores") or {}).get("band")
        except (TypeError, KeyError, IndexError, ValueError, ZeroDivisionError) as e:
            raise DataFileError(f"audit record {decision_id}: its 'decision' JSON needs "
                                f"epsilon, greedy and candidates ({e!r})") from None
        rows.append((decision_id, band, p))
    return pd.DataFrame(rows, columns=["decision_id", "band", "contact_p"])


def _rate(y: np.ndarray) -> float:
    return float(y.mean()) if len(y) else float("nan")


def _ips(contacted: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    usable = np.isfinite(p) & (p > 0) & (p < 1)
    result = dict.fromkeys(("ips_conv_contacted", "ips_conv_not_contacted", "ips_uplift",
                            "ips_ci_low", "ips_ci_high"), float("nan"))
    result["ips_decisions"] = int(usable.sum())
    t, y, p = contacted[usable], y[usable], p[usable]
    if t.all() or not t.any():
        return result
    n = len(t)
    log = LoggedBandit(context=np.zeros((n, 1)), action=t.astype(np.int64), reward=y,
                       propensity=np.where(t, p, 1 - p), n_actions=2)
    always = snips(log, np.tile([0.0, 1.0], (n, 1)))
    never = snips(log, np.tile([1.0, 0.0], (n, 1)))
    # The two estimates weigh disjoint rows, so their errors add in quadrature.
    uplift = Estimate(always.value - never.value, math.hypot(always.se, never.se), n)
    low, high = uplift.ci()
    result.update(ips_conv_contacted=always.value, ips_conv_not_contacted=never.value,
                  ips_uplift=uplift.value, ips_ci_low=low, ips_ci_high=high)
    return result


def uplift_by_segment(labels: pd.DataFrame, segment: str | None = None,
                      outcome: str = "enrolled") -> pd.DataFrame:
    """Rate of ``outcome`` (0/1) of contacted vs not-contacted decisions (``channel`` set or
    not), per value of ``segment`` and overall (``conv_`` columns: the outcome's rates).

    Naive columns compare the raw rates. The logging policy is epsilon-greedy with a known
    probability of contacting each customer (``contact_p``, from :func:`decision_facts`), so
    weighting contacted rows by ``1 / contact_p`` and the others by ``1 / (1 - contact_p)``
    (self-normalised: :func:`ddso.policy.ope.snips` on the two-action log) estimates what
    always vs never contacting would convert, free of the greedy rule's preference for the
    customers it scores highest. Decisions without that choice (``contact_p`` 0, 1 or unknown)
    are left out of the ``ips_`` columns.
    """
    p_all = (labels["contact_p"].to_numpy(float) if "contact_p" in labels
             else np.full(len(labels), np.nan))
    groups: list[tuple[str, np.ndarray]] = []
    if segment is not None:
        keys = labels[segment].astype("string").fillna("(none)")
        groups = [(str(k), (keys == k).to_numpy(bool)) for k in sorted(keys.unique())]
    groups.append(("all", np.ones(len(labels), bool)))
    rows = []
    for name, mask in groups:
        contacted = labels.loc[mask, "channel"].notna().to_numpy()
        y = labels.loc[mask, outcome].to_numpy(float)
        row: dict[str, Any] = {
            "segment": name, "decisions": int(mask.sum()), "contacted": int(contacted.sum()),
            "not_contacted": int((~contacted).sum()), "conv_contacted": _rate(y[contacted]),
            "conv_not_contacted": _rate(y[~contacted])}
        row["uplift"] = row["conv_contacted"] - row["conv_not_contacted"]
        rows.append({**row, **_ips(contacted, y, p_all[mask])})
    return pd.DataFrame(rows)
