"""The linear contextual bandit: exact ridge statistics, relabelling, persistence, policy."""

import json

import numpy as np
import pytest

from ddso.errors import NotFittedError
from ddso.policy.bandit import LinearBandit, action_key
from tests.ddso.policy.logged_world import logged

pytestmark = pytest.mark.unit


def test_learning_in_pieces_equals_the_ridge_solution_of_all_rows():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(300, 3))
    actions = rng.choice(["none", "email:P1"], 300)
    rewards = raw @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=300)
    whole = LinearBandit(["a", "b", "c"], ridge=0.5).learn(raw, actions, rewards)
    parts = LinearBandit(["a", "b", "c"], ridge=0.5).learn(raw[:100], actions[:100], rewards[:100])
    parts.learn(raw[100:], actions[100:], rewards[100:])
    # the scaling comes from the first batch, so compare each with its own closed form
    for bandit in (whole, parts):
        x = bandit._design(raw)
        rows = actions == "none"
        expected = np.linalg.solve(0.5 * np.eye(4) + x[rows].T @ x[rows], x[rows].T @ rewards[rows])
        np.testing.assert_allclose(bandit.predict(raw[:5], ["none"])[:, 0], x[:5] @ expected)


def test_relabel_equals_learning_the_corrected_rewards():
    rng = np.random.default_rng(1)
    raw, actions = rng.normal(size=(50, 2)), ["sms:P1"] * 50
    rewards = rng.random(50)
    late = rewards.copy()
    late[[3, 7]] += 1.0
    fixed = LinearBandit(["a", "b"]).learn(raw, actions, rewards)
    fixed.relabel(raw[[3, 7]], ["sms:P1"] * 2, np.array([1.0, 1.0]))
    direct = LinearBandit(["a", "b"]).learn(raw, actions, late)
    np.testing.assert_allclose(fixed.predict(raw, ["sms:P1"]), direct.predict(raw, ["sms:P1"]))


def test_it_learns_which_offer_suits_which_context_and_round_trips(tmp_path):
    log = logged(4000, seed=2)
    bandit = LinearBandit(["x", "noise"])
    contexts = bandit.contexts([json.loads(f) for f in log["features"]])
    actions = [action_key(c, o) for c, o in zip(log["channel"], log["offer_id"], strict=True)]
    bandit.learn(contexts, actions, log["reward"].to_numpy(), 1 / log["propensity"].to_numpy())
    keys = ["none", "email:P1", "email:P2", "sms:P9"]
    scores = bandit.predict(bandit.contexts([{"x": 1.5}, {"x": -1.5}]), keys)
    assert np.argmax(scores[0, :3]) == 2 and np.argmax(scores[1, :3]) == 1
    assert np.isnan(scores[:, 3]).all()  # never taken: unscored
    again = LinearBandit.load(bandit.save(tmp_path / "b.json"))
    np.testing.assert_array_equal(again.predict(contexts[:20], keys[:3]),
                                  bandit.predict(contexts[:20], keys[:3]))
    with pytest.raises(NotFittedError, match="learn"):
        LinearBandit(["x"]).predict(contexts[:1, :1], ["none"])


def _fitted(log) -> LinearBandit:
    bandit = LinearBandit(["x", "noise"])
    actions = [action_key(c, o) for c, o in zip(log["channel"], log["offer_id"], strict=True)]
    return bandit.learn(bandit.contexts([json.loads(f) for f in log["features"]]), actions,
                        log["reward"].to_numpy())


def test_online_updates_judge_before_learning_and_relabel_late_outcomes():
    from ddso.policy.bandit import OnlineBandit

    champion = "engagement_policy:v0001"
    online = OnlineBandit(_fitted(logged(60, seed=20)), champion)
    stream = logged(3000, seed=21, policy=champion)
    for row in stream.itertuples():
        decision = json.loads(row.decision)
        online.take(row.decision_id, json.loads(row.features), decision, row.reward)
    estimate, champion_mean, judged = online.judgement()
    assert judged == 3000 and champion_mean == pytest.approx(stream["reward"].mean())
    assert estimate > champion_mean  # it learned P2 for x > 0 while judged on unseen rows
    # the same label again changes nothing; a late outcome moves the sums by its difference
    row = stream.iloc[0]
    decision = json.loads(row["decision"])
    online.take(row["decision_id"], json.loads(row["features"]), decision, row["reward"])
    assert online.updates == 3000
    online.take(row["decision_id"], json.loads(row["features"]), decision, row["reward"] + 1)
    # equal to learning the corrected rewards in one batch on the same scaling
    direct = _fitted(logged(60, seed=20))
    late = stream.assign(reward=stream["reward"] + (stream.index == 0))
    direct.learn(direct.contexts([json.loads(f) for f in late["features"]]),
                 [action_key(c, o) for c, o in zip(late["channel"], late["offer_id"],
                                                   strict=True)],
                 late["reward"].to_numpy())
    grid = np.array([[-1.0, 0.0], [0.5, 0.3], [2.0, -1.0]])
    keys = ["none", "email:P1", "email:P2"]
    np.testing.assert_allclose(online.bandit.predict(grid, keys), direct.predict(grid, keys),
                               rtol=1e-9, atol=1e-12)
    assert online.judgement()[2] == 3000  # a relabel is not judged again
