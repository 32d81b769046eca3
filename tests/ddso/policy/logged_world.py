"""A logged decision world for the bandit and challenger tests: the rule always offers P1,
explores with epsilon, and P2 converts better for customers with x > 0."""

import json

import numpy as np
import pandas as pd

from ddso.policy.decide import RULE_POLICY

CANDIDATES = [[None, None], ["email", "P1"], ["email", "P2"]]
GREEDY = ["email", "P1"]


def conversion(action: tuple, x: np.ndarray, p2_good: bool = True) -> np.ndarray:
    if action[0] is None:
        return np.full_like(x, 0.02)
    if action[1] == "P1":
        return np.full_like(x, 0.10)
    return np.where(x > 0, 0.35, 0.02) if p2_good else np.full_like(x, 0.0)


def logged(n: int, seed: int, epsilon: float = 0.3, policy: str = RULE_POLICY,
           start: float = 0.0, p2_good: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    explore = rng.random(n) < epsilon
    pick = rng.integers(0, 3, n)
    rows = []
    for i in range(n):
        action = CANDIDATES[pick[i]] if explore[i] else GREEDY
        propensity = epsilon / 3 + (1 - epsilon) * (action == GREEDY)
        reward = float(rng.random() < conversion(tuple(action), x[i : i + 1], p2_good)[0])
        decision = {"candidates": CANDIDATES, "greedy": GREEDY, "epsilon": epsilon,
                    "channel": action[0], "offer_id": action[1], "propensity": propensity,
                    "versions": {"policy": policy}}
        rows.append({"decision_id": f"{seed}-{i}", "decided_at": start + i * 60.0,
                     "customer_pseudonym": f"c{i}",
                     "features": json.dumps({"x": float(x[i]), "noise": float(rng.normal())}),
                     "channel": action[0], "offer_id": action[1], "propensity": propensity,
                     "decision": json.dumps(decision), "reward": reward})
    return pd.DataFrame(rows)
