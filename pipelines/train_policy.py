"""Train the engagement policy with RLlib PPO and register it as ``engagement_policy``.

PPO on RLlib's new API stack learns on ``ddso/CustomerJourney-v0`` in its vector form (numpy
over ``num_envs_per_env_runner`` journeys per env runner), with the ``dict`` observation mode
and an action-masking RLModule, so masked actions get zero probability. Observations are
scaled by a fixed :class:`rl_env.export.ObsNormalizer` fitted on a random rollout first.
After training, the module's policy network is exported to a numpy forward pass
(:class:`rl_env.export.NumpyPolicy`, ``policy.npz``), evaluated greedily against business as
usual on held-out customers (pool seed ``pool_seed + 1``), and registered with its learning
curve (CSV, JSON and a PNG plot); the registry's gate promotes it
only if its evaluated mean return is no worse than the champion's on the same holdout.

    python -m pipelines.train_policy --registry .ddso/registry
    ray job submit --working-dir . -- python -m pipelines.train_policy \
        --registry /shared/registry --out /shared/rl/engagement_policy --iterations 300

Inside ``ray job submit`` relative paths resolve in the job's copy of the working directory,
so give ``--registry`` and ``--out`` as shared paths or URIs there.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

from ddso.config import load_settings
from ddso.errors import UserError
from ddso.models.registry import ModelRegistry, ModelVersion, PromotionRefused
from ddso.policy.decide import POLICY_MODEL
from ddso.runtime import init_ray
from pipelines._cli import parse_args
from rl_env import ENV_ID
from rl_env.config import JourneyConfig
from rl_env.customers import CustomerPool, synthetic_pool
from rl_env.evaluate import evaluate
from rl_env.export import NumpyPolicy, ObsNormalizer
from rl_env.observation import OBS_NAMES
from rl_env.policies import BusinessAsUsual, RandomMasked
from rl_env.vector import CustomerJourneyVectorEnv

MODEL_NAME = POLICY_MODEL
RLLIB_ENV = "ddso_customer_journey_scaled"
"""The name the scaled vector environment is registered under in RLlib's env registry."""
CURVE_COLUMNS = ("iteration", "env_steps", "episodes", "episode_return_mean",
                 "episode_len_mean", "wall_s", "env_steps_per_s", "policy_loss", "vf_loss",
                 "entropy", "mean_kl")


@dataclass
class Args:
    registry: str | None = None
    """Model registry folder or URI (default: the settings' registry)."""
    out: str = ".ddso/rl/engagement_policy"
    """Folder for the learning curve, the exported policy and the RLlib checkpoint."""
    iterations: int = 60
    """PPO iterations, each sampling train_batch_size env steps: the default (~0.5M steps)
    takes about two minutes on 2 cores; train longer for a better policy."""
    train_batch_size: int = 8192
    """Env steps sampled per iteration."""
    minibatch_size: int = 1024
    num_epochs: int = 4
    """Passes over each iteration's batch."""
    lr: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    """GAE lambda."""
    entropy_coeff: float = 0.0
    no_contact_bias: float = 2.0
    """Initial logit bias of action 0 (no contact). Unbiased, the first policy contacts on
    ~96% of days (one allowed action in ~25 is 'no contact'); 2 brings that to ~75%. Far
    larger biases start so near silence that conversions are too rare to learn from and
    PPO settles on never contacting (measured with 6)."""
    hidden: str = "64,64"
    """Hidden layer sizes of the policy and value networks, comma-separated."""
    num_env_runners: int = 0
    """Remote env runners; 0 samples in the driver, the fastest on 2 cores."""
    num_envs_per_env_runner: int = 64
    """Journeys stepped at once by each env runner (one numpy vector env)."""
    pool_size: int = 10_000
    """Customers of the training pool (the generator's, for pool_seed)."""
    pool_seed: int = 0
    horizon_days: int = 180
    seed: int = 0
    eval_episodes: int = 5_000
    """Held-out customers (pool seed pool_seed + 1) the exported policy and business as usual
    are evaluated on before registering."""
    json: str | None = None
    """Write the run summary here (JSON)."""


class EngagementModule(ActionMaskingTorchRLModule):
    """RLlib's action-masking PPO module, starting with a bias towards no contact.

    ``model_config["no_contact_bias"]`` is added to the policy head's bias of action 0 at
    construction; the rest is the example module of ``ray.rllib.examples``: the mask from the
    observation dict turns masked logits into ``FLOAT_MIN`` in every forward pass.
    """

    def setup(self):
        super().setup()
        with torch.no_grad():
            self.pi.net.mlp[-1].bias[0] += float(self.model_config.get("no_contact_bias", 0.0))


def make_training_env(env_config: dict[str, Any]) -> gym.vector.VectorEnv:
    """RLlib's env creator: the vector env in dict mode with scaled observations."""
    cfg = dict(env_config)
    if "num_envs" not in cfg:
        raise UserError(f"{RLLIB_ENV} is a vector environment: configure "
                        "gym_env_vectorize_mode='vector_entry_point'")
    num_envs = cfg.pop("num_envs")
    normalizer = ObsNormalizer(np.asarray(cfg.pop("norm_log"), bool),
                               np.asarray(cfg.pop("norm_mean")), np.asarray(cfg.pop("norm_std")),
                               float(cfg.pop("norm_clip")))
    return ScaledObservations(CustomerJourneyVectorEnv(num_envs, observation_mode="dict", **cfg),
                              normalizer)


class ScaledObservations(gym.vector.VectorWrapper):
    """Scales ``obs["observations"]`` and drops ``info``.

    RLlib reads the mask from the observation and no info key; converting the per-journey
    info arrays into one dict per journey every step would cost more than the step itself.
    """

    def __init__(self, env: gym.vector.VectorEnv, normalizer: ObsNormalizer):
        super().__init__(env)
        self.normalizer = normalizer
        clip = normalizer.clip
        single = gym.spaces.Dict({
            "observations": gym.spaces.Box(-clip, clip, (len(OBS_NAMES),), np.float32),
            "action_mask": env.single_observation_space["action_mask"]})
        self.single_observation_space = single
        self.observation_space = gym.vector.utils.batch_space(single, env.num_envs)

    def reset(self, *, seed=None, options=None):
        obs, _ = self.env.reset(seed=seed, options=options)
        return self._scale(obs), {}

    def step(self, actions):
        obs, reward, terminated, truncated, _ = self.env.step(actions)
        return self._scale(obs), reward, terminated, truncated, {}

    def _scale(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs["observations"] = self.normalizer(obs["observations"])
        return obs


def fit_normalizer(config: JourneyConfig, pool: CustomerPool, seed: int,
                   journeys: int = 1_000, steps: int = 200) -> ObsNormalizer:
    """Observation scaling from a rollout contacting on a third of days at random."""
    env = CustomerJourneyVectorEnv(journeys, config.with_overrides(observation_mode="box"),
                                   pool=pool)
    policy, rng = RandomMasked(contact_share=1 / 3), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    seen = []
    for _ in range(steps):
        seen.append(obs)
        obs, _, _, _, info = env.step(policy(obs, info["action_mask"], rng))
    return ObsNormalizer.from_observations(np.concatenate(seen))


def build_config(args: Args, normalizer: ObsNormalizer):
    """The PPO configuration (new API stack, action-masking module, vector env)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    env_config = {"pool_size": args.pool_size, "pool_seed": args.pool_seed,
                  "horizon_days": args.horizon_days,
                  "norm_log": normalizer.log.tolist(), "norm_mean": normalizer.mean.tolist(),
                  "norm_std": normalizer.std.tolist(), "norm_clip": normalizer.clip}
    return (
        PPOConfig()
        .environment(env=RLLIB_ENV, env_config=env_config)
        .env_runners(num_env_runners=args.num_env_runners,
                     num_envs_per_env_runner=args.num_envs_per_env_runner,
                     gym_env_vectorize_mode="vector_entry_point",
                     rollout_fragment_length="auto")
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=args.train_batch_size,
                  minibatch_size=args.minibatch_size, num_epochs=args.num_epochs, lr=args.lr,
                  gamma=args.gamma, lambda_=args.gae_lambda, entropy_coeff=args.entropy_coeff)
        .rl_module(rl_module_spec=RLModuleSpec(
            module_class=EngagementModule,
            model_config={"fcnet_hiddens": hidden, "fcnet_activation": "tanh",
                          "head_fcnet_hiddens": [], "vf_share_layers": False,
                          "no_contact_bias": args.no_contact_bias}))
        .debugging(seed=args.seed)
    )


def _number(value: Any) -> float | None:
    """A finite float, or None (RLlib reports NaN before any episode has ended)."""
    return float(value) if value is not None and np.isfinite(value) else None


def _curve_row(result: dict[str, Any], wall_s: float, steps_before: float) -> dict[str, Any]:
    runners = result.get("env_runners", {})
    learner = result.get("learners", {}).get("default_policy", {})
    steps = float(runners.get("num_env_steps_sampled_lifetime", 0))
    return {
        "iteration": int(result["training_iteration"]), "env_steps": int(steps),
        "episodes": int(runners.get("num_episodes_lifetime", 0)),
        "episode_return_mean": _number(runners.get("episode_return_mean")),
        "episode_len_mean": _number(runners.get("episode_len_mean")),
        "wall_s": round(wall_s, 3),
        "env_steps_per_s": round((steps - steps_before) / wall_s, 1),
        "policy_loss": _number(learner.get("policy_loss")),
        "vf_loss": _number(learner.get("vf_loss")), "entropy": _number(learner.get("entropy")),
        "mean_kl": _number(learner.get("mean_kl_loss")),
    }


def write_curve(curve: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """The learning curve as CSV and JSON, and as a PNG plot."""
    files = {"learning_curve.csv": out / "learning_curve.csv",
             "learning_curve.json": out / "learning_curve.json"}
    with files["learning_curve.csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(curve)
    files["learning_curve.json"].write_text(json.dumps(curve, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")  # no screen: render to files only
    import matplotlib.pyplot as plt

    fig, (ret, ent) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [row["env_steps"] for row in curve]
    ret.plot(steps, [row["episode_return_mean"] for row in curve])
    ret.set(xlabel="env steps", ylabel="episode return (mean)", title="PPO learning curve")
    ent.plot(steps, [row["entropy"] for row in curve])
    ent.set(xlabel="env steps", ylabel="policy entropy")
    fig.tight_layout()
    files["learning_curve.png"] = out / "learning_curve.png"
    fig.savefig(files["learning_curve.png"], dpi=100)
    plt.close(fig)
    return files


def main(args: Args) -> ModelVersion:
    from ray.tune.registry import register_env

    # The learner runs in this process; on 2 cores, torch's default of one OpenMP thread per
    # core makes each small minibatch update ~100x slower than one thread does.
    torch.set_num_threads(1)
    settings = load_settings()
    init_ray(settings)
    register_env(RLLIB_ENV, make_training_env)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = JourneyConfig(pool_size=args.pool_size, pool_seed=args.pool_seed,
                           horizon_days=args.horizon_days)
    pool = synthetic_pool(config.pool_size, config.pool_seed, config.horizon_days)
    normalizer = fit_normalizer(config, pool, args.seed)

    algo = build_config(args, normalizer).build_algo()
    curve: list[dict[str, Any]] = []
    began, steps_before = time.perf_counter(), 0.0
    try:
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            result = algo.train()
            row = _curve_row(result, time.perf_counter() - t0, steps_before)
            steps_before = row["env_steps"]
            curve.append(row)
            print(f"train_policy: iteration {row['iteration']}: {row['env_steps']} env steps, "
                  f"return {row['episode_return_mean']}, {row['env_steps_per_s']:.0f} steps/s")
        train_s = time.perf_counter() - began
        policy = NumpyPolicy.from_rl_module(algo.get_module(), normalizer, metadata={
            "env": ENV_ID, "algorithm": "PPO (RLlib new API stack, action masking)",
            "hidden": args.hidden, "iterations": args.iterations})
        checkpoint = algo.save_to_path(str((out / "checkpoint").resolve()))
    finally:
        algo.stop()

    policy_file = policy.save(out / "policy.npz")
    files = {"policy.npz": policy_file, **write_curve(curve, out)}
    holdout_pool = synthetic_pool(args.eval_episodes, args.pool_seed + 1, args.horizon_days)
    report = evaluate({"business_as_usual": BusinessAsUsual(pool.programs, args.horizon_days),
                       "ppo": policy}, config, holdout_pool, args.eval_episodes, args.seed)
    ppo, bau = report["policies"]["ppo"]["metrics"], report["policies"]["business_as_usual"][
        "metrics"]
    total_steps = curve[-1]["env_steps"] if curve else 0
    metrics = {"eval_mean_return": ppo["return"]["value"],
               "eval_conversion": ppo["conversion"]["value"],
               "eval_graduation": ppo["graduation"]["value"],
               "eval_contacts_per_customer": ppo["contacts_per_customer"]["value"],
               "bau_mean_return": bau["return"]["value"],
               "bau_conversion": bau["conversion"]["value"],
               "train_env_steps": total_steps, "train_s": round(train_s, 1),
               "train_env_steps_per_s": round(total_steps / train_s, 1)}
    registry = ModelRegistry(args.registry or settings.registry_path())
    version = registry.register(MODEL_NAME, files, {
        "metrics": metrics,
        "holdout": f"{ENV_ID}:pool_seed={args.pool_seed + 1}:episodes={args.eval_episodes}:"
                   f"seed={args.seed}:horizon={args.horizon_days}",
        "features": list(OBS_NAMES), "n_actions": policy.n_actions,
        "programs": list(pool.programs.product_ids),  # the offers of the actions, in order
        "args": asdict(args), "rllib_checkpoint": str(checkpoint),
    })
    outcome = "promoted (first version)"
    if registry.stage(MODEL_NAME, version.version) != "champion":
        try:
            registry.promote(MODEL_NAME, version.version, metric="eval_mean_return")
            outcome = "promoted"
        except PromotionRefused as refused:
            outcome = str(refused)
    print(f"train_policy: {MODEL_NAME}:{version.version} {outcome}")
    print(f"train_policy: {json.dumps({k: round(v, 4) for k, v in metrics.items()})}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": MODEL_NAME, "version": version.version,
                                               "metrics": metrics, "evaluation": report},
                                              indent=2) + "\n")
    return version


if __name__ == "__main__":
    main(parse_args(Args))
