"""Uplift by segment: the contact probability from the audited decision, naive and IPS
uplift equal to a hand computation, and IPS recovering a planted uplift the naive one misses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ddso.policy.uplift import decision_facts, uplift_by_segment

pytestmark = pytest.mark.unit

CONVERSION = "enrolled"
DAY = 86_400.0
START = pd.Timestamp("2025-03-01", tz="UTC").timestamp()
EPSILON = 0.2
TRUE_UPLIFT = {"A": 0.08, "B": 0.0, "C": -0.03}
BASE = {"A": 0.04, "B": 0.05, "C": 0.06}


def logged_decisions(n: int = 30_000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label rows and audit records of an epsilon-greedy policy with a planted uplift.

    The greedy rule contacts the customers it likes (``keen``), who also convert more without
    any contact, so the naive contacted-vs-not comparison is biased and IPS is not.
    """
    rng = np.random.default_rng(seed)
    segment = rng.choice(list(TRUE_UPLIFT), size=n)
    keen = rng.random(n) < 0.5
    greedy_contacts = keen & (segment != "C")
    offers = rng.integers(1, 3, size=n)  # eligible offers: candidates = no contact + offers
    explored = rng.random(n) < EPSILON
    pick = rng.integers(0, offers + 1)  # a uniform candidate; 0 is no contact
    contacted = np.where(explored, pick > 0, greedy_contacts)
    base = np.array([BASE[s] for s in segment]) + 0.04 * keen
    rate = base + np.array([TRUE_UPLIFT[s] for s in segment]) * contacted
    enrolled = (rng.random(n) < rate).astype(int)
    ids = [f"d{i:06d}" for i in range(n)]
    decided_at = START + rng.uniform(0, 10 * DAY, n)
    channel = np.where(contacted, "email", None)
    labels = pd.DataFrame({
        "decision_id": ids, "decided_at": decided_at, "customer_pseudonym": ids,
        "channel": channel, "offer_id": np.where(contacted, "savings_plan", None),
        "propensity": 0.5, "accepted": enrolled, "enrolled": enrolled, "graduated": 0,
        "churned": 0, "purchased": 0, "revenue": 0.0, "reward": enrolled.astype(float),
        "explored": explored, "segment": segment,
        "experiment": "contact_test", "arm": np.where(keen, "treatment", "control")})
    decisions = [json.dumps({
        "epsilon": EPSILON, "greedy": ["email", "savings_plan"] if g else [None, None],
        "candidates": [[None, None]] + [["email", f"o{j}"] for j in range(k)],
        "scores": {"band": "B"}}) for g, k in zip(greedy_contacts, offers, strict=True)]
    audit = pd.DataFrame({"decision_id": ids, "decided_at": decided_at, "channel": channel,
                          "explored": explored, "decision": decisions})
    labels["contact_p"] = (1 - EPSILON) * greedy_contacts + EPSILON * offers / (offers + 1)
    return labels, audit


def hand_uplift(frame: pd.DataFrame) -> tuple[float, float]:
    """Naive and inverse-propensity-weighted (self-normalised) uplift, by hand."""
    t = frame["channel"].notna().to_numpy()
    y = frame[CONVERSION].to_numpy(float)
    p = frame["contact_p"].to_numpy()
    naive = y[t].mean() - y[~t].mean()
    w1, w0 = 1 / p[t], 1 / (1 - p[~t])
    return naive, (w1 * y[t]).sum() / w1.sum() - (w0 * y[~t]).sum() / w0.sum()


def test_contact_probability_comes_from_the_audited_decision():
    labels, audit = logged_decisions(2_000)
    facts = decision_facts(audit)
    np.testing.assert_allclose(facts["contact_p"], labels["contact_p"])
    assert (facts["band"] == "B").all()


def test_uplift_by_segment_equals_the_hand_computation_and_recovers_the_planted_uplift():
    labels, _ = logged_decisions()
    table = uplift_by_segment(labels, "segment").set_index("segment")
    assert list(table.index) == ["A", "B", "C", "all"]
    for name, truth in TRUE_UPLIFT.items():
        rows = labels[labels["segment"] == name]
        naive, ips = hand_uplift(rows)
        row = table.loc[name]
        assert row["uplift"] == pytest.approx(naive, abs=1e-12)
        assert row["ips_uplift"] == pytest.approx(ips, abs=1e-12)
        assert row["decisions"] == len(rows)
        assert row["contacted"] == rows["channel"].notna().sum()
        assert row["ips_ci_low"] < truth < row["ips_ci_high"], name
    # The greedy rule contacts the keen customers of A: naive credit goes to the contact.
    assert table.loc["A", "uplift"] > table.loc["A", "ips_ci_high"]
    # Segment C is never contacted greedily: every decision there had a choice, and kept it.
    assert table.loc["C", "ips_decisions"] == table.loc["C", "decisions"]


def test_uplift_without_contact_probabilities_leaves_the_ips_columns_empty():
    labels, _ = logged_decisions(500)
    table = uplift_by_segment(labels.drop(columns="contact_p"))
    assert list(table["segment"]) == ["all"] and table["ips_decisions"].iloc[0] == 0
    assert np.isnan(table["ips_uplift"].iloc[0]) and np.isfinite(table["uplift"].iloc[0])
