"""The ``ddso`` command line.

Each subcommand parses its arguments here and calls one library or pipeline function; the
heavy imports happen inside the handlers so that ``ddso --help`` is instant. A
:class:`~ddso.errors.UserError` becomes one line on stderr and exit code 2; nothing else is
caught, so a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ddso.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a bad value exits 2 naming it)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def _settings(args: argparse.Namespace):
    from ddso.config import load_settings

    return load_settings(args.config)


# --- handlers --------------------------------------------------------------------------------


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ddso.data.generator import GeneratorConfig, generate

    try:
        cfg = GeneratorConfig(
            customers=args.customers, days=args.days, seed=args.seed, start=args.start
        )
    except ValidationError as err:
        e = err.errors(include_url=False)[0]
        raise UserError(f"data generate --{e['loc'][0]}: {e['msg']}") from None
    summary = generate(cfg, Path(args.out), progress=not args.quiet)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_data_describe(args: argparse.Namespace) -> int:
    from ddso.data.describe import describe, format_description

    report = describe(Path(args.dir))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(format_description(report))
    return 0


def _cmd_data_publish(args: argparse.Namespace) -> int:
    from ddso.io.publish import dataset_records, publish

    settings = _settings(args)
    n = publish(settings, dataset_records(Path(args.dir)), partitions=args.partitions)
    where = (
        settings.kafka.events_topic
        if settings.kafka.bootstrap_servers
        else settings.event_log_path()
    )
    print(f"published {n} events to {where}")
    return 0


def _cmd_train_propensity(args: argparse.Namespace) -> int:
    from ddso.models.tabular import train_tabular, write_metrics

    settings = _settings(args)
    result = train_tabular(
        Path(args.data),
        args.target,
        settings.registry_path(),
        id_col=args.id,
        time_col=args.time,
        name=args.name,
    )
    if args.json:
        write_metrics(result, Path(args.json))
    print(
        json.dumps({**result.metrics, "model": f"{result.version.name}:{result.version.version}"})
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from ddso.bench import run_benchmark

    run_benchmark(args.name, Path(args.json) if args.json else None, args.option or [])
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(json.dumps(settings.model_dump(mode="json"), indent=2))
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from pipelines.up import Args, main

    return main(
        Args(
            config=args.config,
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            requests=args.requests,
            once=args.once,
            port=args.port,
        )
    )


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from serve_deployments.security import key_store

    key_id, token = key_store(_settings(args)).create_key(args.scope, name=args.name)
    print(json.dumps({"key_id": key_id, "scopes": sorted(args.scope.split(","))}))
    print(f"token (shown once, store it now): {token}")
    return 0


def _cmd_keys_list(args: argparse.Namespace) -> int:
    from serve_deployments.security import key_store

    for record in key_store(_settings(args)).list_keys():
        print(json.dumps(record.describe()))
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from serve_deployments.security import key_store

    record = key_store(_settings(args)).revoke_key(args.key_id)
    print(json.dumps(record.describe()))
    return 0


def _cmd_audit_replay(args: argparse.Namespace) -> int:
    from ddso.audit import find_record, replay
    from ddso.models.registry import ModelRegistry

    settings = _settings(args)
    audit_dir = Path(args.audit) if args.audit else settings.home / "audit"
    record = find_record(audit_dir, args.decision_id)
    problems = replay(record, ModelRegistry(args.registry or settings.registry_path()))
    if problems:
        print(f"decision {args.decision_id}: replay differs")
        for line in problems:
            print(f"  {line}")
        return 1
    print(f"decision {args.decision_id}: replay is bit-identical")
    return 0


def _cmd_experiments_list(args: argparse.Namespace) -> int:
    from ddso.experiments import read_state

    settings = _settings(args)
    if not settings.experiments:
        print("no experiments configured (settings key 'experiments')")
    for name, e in settings.experiments.items():
        saved = read_state(settings.home, name)
        stopped, concluded = saved["stopped"], saved["concluded"]
        arms = ", ".join(
            f"{a.name} {a.share:.0%} ({a.policy_label})" + (" STOPPED" if a.name in stopped else "")
            for a in e.arms
        )
        state = "active" if e.active else "inactive"
        if concluded:
            state = (f"concluded {concluded['at'][:19]} (winner {concluded['winner'] or 'none'}"
                     f"{', promoted ' + concluded['promoted'] if concluded['promoted'] else ''})")
        print(f"{name}: {state}, control {e.control}, primary {e.primary_metric}; arms {arms}")
    return 0


def _cmd_experiments_report(args: argparse.Namespace) -> int:
    from ddso.experiment_report import format_report, run_report
    from ddso.experiments import find_experiment

    settings = _settings(args)
    experiment = find_experiment(settings.experiments, args.name)
    labels = Path(args.labels) if args.labels else settings.home / "feedback"
    result = run_report(settings.home, experiment, labels)
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ddso.report import write_report

    settings = _settings(args)
    # Inputs named on the command line must exist; the defaults may not yet (the report says so).
    for option, value in (("--labels", args.labels), ("--audit", args.audit)):
        if value is not None and not Path(value).exists():
            raise UserError(f"report {option} {value}: no such file or folder")
    if args.registry is not None and "://" not in args.registry and not Path(
            args.registry).is_dir():
        raise UserError(f"report --registry {args.registry}: no such folder")
    index = write_report(
        args.out,
        registry=args.registry or settings.registry_path(),
        labels=args.labels or settings.home / "feedback",
        audit=args.audit or settings.home / "audit",
        experiments=settings.experiments,
        home=settings.home,
    )
    print(f"report written to {index}")
    return 0


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddso", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", metavar="FILE", help="YAML settings file (default: $DDSO_CONFIG, if set)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = sub.add_parser("up", help="generate data, featurize, train, serve and send decisions")
    up.add_argument("--customers", type=positive_int, default=5000)
    up.add_argument("--days", type=positive_int, default=120)
    up.add_argument("--seed", type=_non_negative_int, default=7)
    up.add_argument("--requests", type=positive_int, default=5, help="sample decisions to send")
    up.add_argument("--port", type=positive_int, default=None, help="HTTP port (default: config)")
    up.add_argument("--once", action="store_true", help="exit after the sample requests")
    up.set_defaults(func=_cmd_up)

    data = sub.add_parser("data", help="synthetic data").add_subparsers(
        dest="data_command", required=True, parser_class=_Parser
    )
    gen = data.add_parser("generate", help="write warehouse tables and the event stream")
    gen.add_argument("--customers", type=positive_int, required=True)
    gen.add_argument("--days", type=positive_int, required=True)
    gen.add_argument("--seed", type=_non_negative_int, default=0)
    gen.add_argument("--start", default="2025-01-01", help="first day (YYYY-MM-DD, UTC)")
    gen.add_argument("--out", required=True, metavar="DIR")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_cmd_data_generate)
    desc = data.add_parser("describe", help="sizes and funnel rates of a generated dataset")
    desc.add_argument("dir", metavar="DIR")
    desc.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    desc.set_defaults(func=_cmd_data_describe)

    pub = data.add_parser(
        "publish", help="replay a dataset's events into Kafka (if configured) or the local log"
    )
    pub.add_argument("dir", metavar="DIR")
    pub.add_argument("--partitions", type=positive_int, default=4, help="for a new topic/log")
    pub.set_defaults(func=_cmd_data_publish)

    train = sub.add_parser("train", help="train models").add_subparsers(
        dest="train_command", required=True, parser_class=_Parser
    )
    prop = train.add_parser("propensity", help="a binary propensity model on your own table")
    prop.add_argument("--data", required=True, metavar="FILE", help=".csv or .parquet")
    prop.add_argument("--target", required=True, metavar="COLUMN", help="yes/no, true/false, 1/0")
    prop.add_argument("--id", metavar="COLUMN", help="an identifier column, not a feature")
    prop.add_argument("--time", metavar="COLUMN", help="validate on the newest 20%% of rows")
    prop.add_argument("--name", default="propensity_custom", help="registry model name")
    prop.add_argument("--json", metavar="PATH", help="write the metrics here")
    prop.set_defaults(func=_cmd_train_propensity)

    bench = sub.add_parser("bench", help="run a benchmark from benchmarks/")
    bench.add_argument("name", help="benchmark name, e.g. generate")
    bench.add_argument("--json", metavar="PATH", help="write the metrics as one JSON object")
    bench.add_argument(
        "-o", "--option", action="append", metavar="KEY=VALUE", help="benchmark parameter"
    )
    bench.set_defaults(func=_cmd_bench)

    config = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True, parser_class=_Parser
    )
    show = config.add_parser("show", help="print the resolved settings (secrets masked)")
    show.set_defaults(func=_cmd_config_show)

    keys = sub.add_parser("keys", help="API keys of the decision API").add_subparsers(
        dest="keys_command", required=True, parser_class=_Parser
    )
    kc = keys.add_parser("create", help="create a key and print its token (shown once)")
    kc.add_argument("--scope", required=True, help="comma-separated: decide, ingest, admin")
    kc.add_argument("--name", default="", help="a label for the key")
    kc.set_defaults(func=_cmd_keys_create)
    kl = keys.add_parser("list", help="every key (never the token), revoked ones included")
    kl.set_defaults(func=_cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key; servers refuse it from the next request")
    kr.add_argument("key_id", metavar="ID")
    kr.set_defaults(func=_cmd_keys_revoke)

    audit = sub.add_parser("audit", help="the decision audit log").add_subparsers(
        dest="audit_command", required=True, parser_class=_Parser
    )
    ar = audit.add_parser("replay", help="re-run a logged decision; exit 1 if it differs")
    ar.add_argument("decision_id", metavar="DECISION_ID")
    ar.add_argument("--audit", metavar="DIR", help="audit folder (default: <home>/audit)")
    ar.add_argument("--registry", metavar="R", help="model registry (default: config)")
    ar.set_defaults(func=_cmd_audit_replay)

    exps = sub.add_parser("experiments", help="A/B and champion/challenger experiments")
    exps = exps.add_subparsers(dest="experiments_command", required=True, parser_class=_Parser)
    el = exps.add_parser("list", help="configured experiments, their arms and stopped arms")
    el.set_defaults(func=_cmd_experiments_list)
    er = exps.add_parser(
        "report", help="per-arm outcomes, always-valid tests; stops arms breaching a guardrail"
    )
    er.add_argument("name", metavar="NAME")
    er.add_argument(
        "--labels", metavar="PATH",
        help="label store folder or Parquet file (default: <home>/feedback)",
    )
    er.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    er.set_defaults(func=_cmd_experiments_report)

    rep = sub.add_parser("report", help="an HTML report: models, policy, uplift, experiments")
    rep.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and plots")
    rep.add_argument("--registry", metavar="R", help="model registry (default: config)")
    rep.add_argument("--labels", metavar="PATH",
                     help="label store folder or Parquet file (default: <home>/feedback)")
    rep.add_argument("--audit", metavar="DIR", help="audit folder (default: <home>/audit)")
    rep.set_defaults(func=_cmd_report)
    from rl_env.cli import add_rl_commands

    add_rl_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except UserError as e:
        print(f"ddso: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddso: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
