"""Off-policy evaluation and learning on the Open Bandit Dataset sample ('All' campaign).

Part 1, estimators against a known answer (the Open Bandit Pipeline's standard experiment):
estimate the production Bernoulli Thompson Sampling policy's CTR from the uniform random log,
taking BTS's action distribution from ``prior_bts.yaml`` (Monte-Carlo over ``n_sim`` ranked
Beta draws, seed ``seed``), and compare with the BTS log's own mean click
(``obd_bts_ctr_onpolicy``). For each estimator (``ips``, ``snips``, ``dm``, ``dr``):
``obd_bts_ctr_<est>`` with ``_se`` on the whole random log and ``_relerr`` = |estimate - on-policy
CTR| / on-policy CTR; over ``n_boot`` bootstrap resamples of the random log (the reward model
refitted on each): ``_boot_mean``, ``_boot_std`` of the estimate and ``_relerr_boot_mean``,
``_relerr_boot_std``. Also ``obd_random_ctr_onpolicy`` (the random log's mean click) and
``obd_bts_ess``, the Kish effective sample size of BTS's importance weights on the random log.

Part 2, a policy learned off-policy: the random log is split in halves (seed ``seed``). A
:class:`~ddso.policy.ope.LogisticRewardModel` fitted on the training half scores the items for
every row of the evaluation half; the learned policy shows, at each position, one of the
``top_m`` best-scored items uniformly at random. The deterministic top-3 ranking of the same
scores matches only ~1/80 of uniformly logged rows (``ranking_matched_rows``, with
``ranking_matched_clicks`` clicks among them), too few for any estimator. The evaluation half
alone estimates, with 95% normal intervals (``_se``, ``_ci_low``, ``_ci_high``; with a handful
of clicks they can dip below 0):

- ``learned_ctr_<est>``: the learned policy, with ``learned_ess`` (Kish effective sample size
  of its importance weights) and ``learned_matched_clicks``;
- ``random_ctr_eval``: the random policy (the mean click of the evaluation half);
- ``bts_ctr_eval_dr``: BTS by DR on the same rows, to set beside ``obd_bts_ctr_onpolicy``;
- ``learned_minus_random_dr``, ``learned_minus_bts_dr``: paired DR differences on the same
  rows, with bootstrap percentile intervals (reward model fixed, rows resampled).

The reward model (context: one-hot user features; action: item one-hot; position one-hot; the
user's affinity to the item) is cross-fitted over ``folds`` folds wherever DM or DR uses it.
Its 5-fold cross-validated log-loss on the random log improves steadily as ``C`` shrinks (0.0322
at C = 100, 0.0250 at 0.01) towards a constant model's (0.02497): 38 clicks carry almost no
signal on who clicks what. ``C`` = 0.01 keeps a little item signal for the learned ranking.

Options: ``seed`` (0), ``n_boot`` (100), ``n_sim`` (100000), ``folds`` (3), ``C`` (0.01),
``top_m`` (10), ``data_dir`` (the shared ``obd`` folder).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ddso.data.real import (
    OBD_AFFINITY_PREFIX,
    OBD_USER_FEATURES,
    load_bts_prior,
    load_obd,
)
from ddso.policy.offpolicy_learning import (
    ranking_action_dist,
    thompson_action_dist,
    top_m_action_dist,
    uniform_action_dist,
)
from ddso.policy.ope import (
    Estimate,
    LoggedBandit,
    LogisticRewardModel,
    bootstrap,
    cross_fit_rewards,
    dr,
    effective_sample_size,
    estimate_all,
    importance_weights,
    ips,
)

N_POSITIONS = 3


def obd_logged_bandit(frame: pd.DataFrame, n_actions: int) -> LoggedBandit:
    """A :func:`~ddso.data.real.load_obd` frame as a log: positions 1-3 become 0-2."""
    affinity = [f"{OBD_AFFINITY_PREFIX}{item}" for item in range(n_actions)]
    return LoggedBandit(
        context=pd.get_dummies(frame[list(OBD_USER_FEATURES)]).to_numpy(float),
        action=frame["item_id"].to_numpy(),
        reward=frame["click"].to_numpy(float),
        propensity=frame["propensity_score"].to_numpy(),
        n_actions=n_actions,
        position=frame["position"].to_numpy() - 1,
        n_positions=N_POSITIONS,
        action_features=frame[affinity].to_numpy(float),
    )


def _for_rows(dist: np.ndarray, n: int) -> np.ndarray:
    """A context-free (n_actions, n_positions) distribution as a read-only (n, ...) view."""
    return np.broadcast_to(dist, (n, *dist.shape))


def _with_ci(name: str, estimate: Estimate) -> dict[str, float]:
    low, high = estimate.ci()
    return {name: estimate.value, f"{name}_se": estimate.se, f"{name}_ci_low": low,
            f"{name}_ci_high": high}


def _bts_from_random(log: LoggedBandit, bts_dist: np.ndarray, truth: float, n_boot: int,
                     folds: int, C: float, seed: int) -> dict[str, float]:
    def estimates(sample: LoggedBandit) -> dict[str, Estimate]:
        reward_hat = cross_fit_rewards(sample, folds, seed, C)
        return estimate_all(sample, _for_rows(bts_dist, sample.n), reward_hat)

    out: dict[str, float] = {}
    for name, estimate in estimates(log).items():
        out[f"obd_bts_ctr_{name}"] = estimate.value
        out[f"obd_bts_ctr_{name}_se"] = estimate.se
        out[f"obd_bts_ctr_{name}_relerr"] = abs(estimate.value - truth) / truth
    boot = bootstrap(lambda rows: {k: e.value for k, e in estimates(log.take(rows)).items()},
                     log.n, n_boot, seed)
    for name, values in boot.items():
        errors = np.abs(values - truth) / truth
        out[f"obd_bts_ctr_{name}_boot_mean"] = values.mean()
        out[f"obd_bts_ctr_{name}_boot_std"] = values.std(ddof=1) if n_boot > 1 else 0.0
        out[f"obd_bts_ctr_{name}_relerr_boot_mean"] = errors.mean()
        out[f"obd_bts_ctr_{name}_relerr_boot_std"] = errors.std(ddof=1) if n_boot > 1 else 0.0
    return out


def _learned_policy(log: LoggedBandit, bts_dist: np.ndarray, n_boot: int, folds: int, C: float,
                    top_m: int, seed: int) -> dict[str, float | int]:
    order = np.random.default_rng(seed).permutation(log.n)
    train, held_out = log.take(order[: log.n // 2]), log.take(order[log.n // 2:])
    scores = LogisticRewardModel(C=C).fit(train).predict(held_out).mean(axis=2)
    learned = top_m_action_dist(scores, top_m, N_POSITIONS)
    ranking = ranking_action_dist(scores, N_POSITIONS)
    bts = _for_rows(bts_dist, held_out.n)
    reward_hat = cross_fit_rewards(held_out, folds, seed, C)

    weights = importance_weights(held_out, learned)
    ranking_weights = importance_weights(held_out, ranking)
    out: dict[str, float | int] = {
        "learned_top_m": top_m, "eval_rows": held_out.n,
        "eval_clicks": int(held_out.reward.sum()),
        "learned_ess": effective_sample_size(weights),
        "learned_matched_clicks": int(held_out.reward[weights > 0].sum()),
        "ranking_matched_rows": int(np.count_nonzero(ranking_weights)),
        "ranking_matched_clicks": int(held_out.reward[ranking_weights > 0].sum()),
    }
    for name, estimate in estimate_all(held_out, learned, reward_hat).items():
        out.update(_with_ci(f"learned_ctr_{name}", estimate))
    uniform = _for_rows(uniform_action_dist(log.n_actions, N_POSITIONS), held_out.n)
    out.update(_with_ci("random_ctr_eval", ips(held_out, uniform)))
    out.update(_with_ci("bts_ctr_eval_dr", dr(held_out, bts, reward_hat)))

    def differences(rows: np.ndarray) -> dict[str, float]:
        sample, q = held_out.take(rows), reward_hat[rows]
        value = dr(sample, learned[rows], q).value
        return {"random": value - sample.reward.mean(),
                "bts": value - dr(sample, bts[rows], q).value}

    baseline = {"random": out["random_ctr_eval"], "bts": out["bts_ctr_eval_dr"]}
    for other, values in bootstrap(differences, held_out.n, n_boot, seed).items():
        out[f"learned_minus_{other}_dr"] = out["learned_ctr_dr"] - baseline[other]
        out[f"learned_minus_{other}_dr_ci_low"] = np.quantile(values, 0.025)
        out[f"learned_minus_{other}_dr_ci_high"] = np.quantile(values, 0.975)
    return out


def run(options: dict[str, str]) -> dict[str, float | int | str]:
    """Both parts of the module docstring on the shared OBD sample; flat metrics."""
    seed = int(options.get("seed", 0))
    n_boot = int(options.get("n_boot", 100))
    n_sim = int(options.get("n_sim", 100_000))
    folds = int(options.get("folds", 3))
    C = float(options.get("C", 0.01))
    top_m = int(options.get("top_m", 10))
    data_dir = Path(options["data_dir"]) if options.get("data_dir") else None

    def path(name: str) -> Path | None:
        return data_dir / name if data_dir is not None else None

    began = time.perf_counter()
    prior = load_bts_prior("all", path("prior_bts.yaml"))
    n_actions = len(prior)
    random_log = obd_logged_bandit(load_obd("random", path("random_all.csv")), n_actions)
    bts_clicks = load_obd("bts", path("bts_all.csv"))["click"].to_numpy(float)
    bts_dist = thompson_action_dist(prior["alpha"].to_numpy(), prior["beta"].to_numpy(),
                                    N_POSITIONS, n_sim, seed)
    truth = float(bts_clicks.mean())

    out: dict[str, float | int] = {
        "seed": seed, "n_boot": n_boot, "n_sim": n_sim, "folds": folds, "C": C,
        "random_rows": random_log.n, "random_clicks": int(random_log.reward.sum()),
        "bts_rows": bts_clicks.size, "bts_clicks": int(bts_clicks.sum()),
        "obd_bts_ctr_onpolicy": truth,
        "obd_bts_ctr_onpolicy_se": bts_clicks.std(ddof=1) / np.sqrt(bts_clicks.size),
        "obd_random_ctr_onpolicy": random_log.reward.mean(),
        "obd_random_ctr_onpolicy_se": random_log.reward.std(ddof=1) / np.sqrt(random_log.n),
        "obd_bts_ess": effective_sample_size(
            importance_weights(random_log, _for_rows(bts_dist, random_log.n))),
    }
    out.update(_bts_from_random(random_log, bts_dist, truth, n_boot, folds, C, seed))
    out.update(_learned_policy(random_log, bts_dist, n_boot, folds, C, top_m, seed))
    out["wall_s"] = time.perf_counter() - began
    return {k: v if isinstance(v, int | str) else round(float(v), 6) for k, v in out.items()}
