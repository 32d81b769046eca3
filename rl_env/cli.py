"""``ddso rl ...``: calibrate the journey environment on logged events, evaluate policies.

:func:`add_rl_commands` registers the ``rl`` group on the ``ddso`` parser; each handler
parses nothing itself, imports what it needs, calls one library function and returns the
exit code. Bad input raises :class:`~ddso.errors.UserError` (exit code 2 in ``ddso.cli``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ddso.cli import positive_int
from ddso.errors import UserError
from ddso.policy.decide import POLICY_MODEL


def _write_json(path: str | None, report: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=2) + "\n")


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from rl_env.calibrate import calibrate, format_calibration

    report = calibrate(Path(args.dir), latents=args.latents)
    _write_json(args.json, report)
    print(format_calibration(report))
    return 0


def load_policy(source: str):
    """A trained policy from a ``.npz`` file, or the champion ``engagement_policy`` of a
    registry (folder or URI)."""
    from rl_env.export import NumpyPolicy

    if source.endswith(".npz"):
        return NumpyPolicy.load(source), source
    from ddso.models.registry import ModelRegistry

    champion = ModelRegistry(source).champion(POLICY_MODEL)
    return (NumpyPolicy.load(champion.artifact("policy.npz")),
            f"{POLICY_MODEL}:{champion.version} ({source})")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from rl_env.config import JourneyConfig
    from rl_env.customers import synthetic_pool
    from rl_env.evaluate import baseline_policies, evaluate, format_report

    config = JourneyConfig(horizon_days=args.horizon_days)
    names = tuple(n.strip() for n in args.policies.split(",") if n.strip()) if (
        args.policies) else None
    trained = load_policy(args.policy_from) if args.policy_from else None

    def progress(line: str) -> None:
        print(f"rl evaluate: {line}", file=sys.stderr)

    progress("building baselines" + (" (fitting the greedy propensity model)" if names is None
                                      or "greedy_propensity" in names else ""))
    policies = baseline_policies(config, seed=args.seed, greedy_journeys=args.greedy_journeys,
                                 names=names)
    if trained is not None:
        policy, source = trained
        policies["ppo"] = policy.sampling(True)
        policies["ppo_greedy"] = policy.sampling(False)
        progress(f"learned policy from {source}")
    if not policies:
        raise UserError("rl evaluate: no policy to evaluate; name some with --policies or "
                        "give --policy-from")
    pool = synthetic_pool(args.episodes, args.pool_seed, config.horizon_days)
    report = evaluate(policies, config, pool, args.episodes, args.seed, progress=progress)
    report["pool_seed"] = args.pool_seed
    report["policy_from"] = trained[1] if trained is not None else None
    _write_json(args.json, report)
    print(format_report(report))
    return 0


def add_rl_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``rl calibrate`` and ``rl evaluate`` on the ``ddso`` subparsers."""
    group = subparsers.add_parser("rl", help="the engagement-policy environment")
    rl = group.add_subparsers(dest="rl_command", required=True, parser_class=type(group))

    cal = rl.add_parser("calibrate", help="fit the response model to logged offers and outcomes")
    cal.add_argument("dir", metavar="DIR", help="a dataset folder (events/, warehouse/) as "
                     "`ddso data generate` writes it, or your own in that layout")
    cal.add_argument("--latents", choices=("auto", "truth", "observed"), default="auto",
                     help="read latent drivers from truth/ (auto: if present) or integrate "
                     "them out")
    cal.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    cal.set_defaults(func=_cmd_calibrate)

    ev = rl.add_parser("evaluate", help="run the baselines (and a learned policy) with 95%% CIs")
    ev.add_argument("--episodes", type=positive_int, default=10_000,
                    help="customers per policy, one episode each (default 10000)")
    ev.add_argument("--seed", type=int, default=0, help="environment and policy seed")
    ev.add_argument("--pool-seed", type=int, default=1, help="customers drawn with this seed "
                    "(default 1: training uses pool seed 0)")
    ev.add_argument("--horizon-days", type=positive_int, default=180)
    ev.add_argument("--policies", metavar="A,B", help="baselines to run (default: all of "
                    "no_contact, random, business_as_usual, greedy_propensity, linucb)")
    ev.add_argument("--policy-from", metavar="REGISTRY", help="a model registry holding an "
                    f"{POLICY_MODEL} champion, or a policy .npz")
    ev.add_argument("--greedy-journeys", type=positive_int, default=20_000,
                    help="logged journeys the greedy propensity model is fitted on")
    ev.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    ev.set_defaults(func=_cmd_evaluate)
