"""The report of an experiment: per-arm outcomes, always-valid comparisons, guardrail stops.

:func:`report` reads the labels of the feedback job (one row per decision: ``experiment``,
``arm``, the outcome labels, ``revenue``, ``decided_at``; :mod:`ddso.policy.labelling`) and
gives per arm the conversion (enrolled), graduation, churn and acceptance rates with Wilson
95 % intervals and the revenue per decision with a normal 95 % interval; per challenger arm,
against the control arm, the always-valid test of :mod:`ddso.sequential` on the primary
metric and on every guardrail, over the decisions in time order. Each test has error rate
``alpha`` however often the report is run (several guardrails are several tests: set
``alpha`` lower to bound their joint error rate).

The labels of recent decisions may still be incomplete (outcomes arrive up to the
attribution window later): every arm is equally affected, so the comparison stays fair, but
absolute rates are low near the end.

An arm whose always-valid interval shows a guardrail metric worse than the control's by more
than the guardrail allows is stopped (:func:`ddso.experiments.record_stops`); serving sends
its customers to the control arm from then on.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ddso.errors import UserError
from ddso.experiments import (
    HIGHER_IS_WORSE,
    Arm,
    Experiment,
    Guardrail,
    read_stopped,
    record_stops,
)
from ddso.sequential import SequentialResult, mean_interval, msprt, wilson_interval

RATE_METRICS = ("enrolled", "graduated", "churned", "accepted")
METRICS = (*RATE_METRICS, "revenue")
LABEL_COLUMNS = ("experiment", "arm", "decided_at", *METRICS)
"""The label columns a report reads."""


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    share: float
    policy: str
    n: int
    stopped: bool
    rates: dict[str, tuple[float, float, float]]
    """metric -> (rate, Wilson 95 % low, high)."""
    revenue: tuple[float, float, float]
    """Revenue per decision, 95 % low, high."""


@dataclass(frozen=True)
class Comparison:
    arm: str
    metric: str
    role: Literal["primary", "guardrail"]
    difference: float
    """Arm minus control."""
    ci_low: float
    ci_high: float
    """Always-valid ``1 - alpha`` interval of the difference."""
    p_value: float
    """Always-valid p-value of "no difference"."""
    verdict: str
    """primary: better / worse / undecided; guardrail: breached / within / undecided."""


@dataclass(frozen=True)
class ExperimentReport:
    experiment: str
    control: str
    primary_metric: str
    alpha: float
    rows: int
    arms: list[ArmSummary]
    comparisons: list[Comparison]
    unknown_arm_rows: int = 0
    newly_stopped: dict[str, str] = field(default_factory=dict)
    """Arms this report stops: arm -> the guardrail breach."""

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    """JSON has no infinity: unbounded interval ends become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _verdict(r: SequentialResult, higher_is_worse: bool) -> str:
    if r.ci_low > 0:
        return "worse" if higher_is_worse else "better"
    if r.ci_high < 0:
        return "better" if higher_is_worse else "worse"
    return "undecided"


def _guardrail(r: SequentialResult, g: Guardrail) -> str:
    """breached: surely worse than allowed; within: surely not; else undecided."""
    if g.higher_is_worse:
        breached, within = r.ci_low > g.max_degradation, r.ci_high <= g.max_degradation
    else:
        breached, within = r.ci_high < -g.max_degradation, r.ci_low >= -g.max_degradation
    return "breached" if breached else "within" if within else "undecided"


def _compare(experiment: Experiment, arm: str, arm_of: np.ndarray,
             values: Mapping[str, np.ndarray]) -> tuple[list[Comparison], str | None]:
    """The arm's comparisons with the control, and the first guardrail breach (or None)."""
    both = (arm_of == experiment.control) | (arm_of == arm)
    treated = arm_of[both] == arm

    def test(metric: str) -> SequentialResult:
        return msprt(treated, values[metric][both], alpha=experiment.alpha,
                     mixing_sd=experiment.mixing_sd)

    metric = experiment.primary_metric
    r = test(metric)
    out = [Comparison(arm, metric, "primary", r.difference, r.ci_low, r.ci_high, r.p_value,
                      _verdict(r, metric in HIGHER_IS_WORSE))]
    breach = None
    for g in experiment.guardrails:
        r = test(g.metric)
        verdict = _guardrail(r, g)
        out.append(Comparison(arm, g.metric, "guardrail", r.difference, r.ci_low, r.ci_high,
                              r.p_value, verdict))
        if verdict == "breached" and breach is None:
            sign = "+" if g.higher_is_worse else "-"
            breach = (
                f"guardrail {g.metric}: {r.difference:+.4g} vs {experiment.control} "
                f"(always-valid {1 - experiment.alpha:.0%} CI {r.ci_low:+.4g} .. "
                f"{r.ci_high:+.4g}), limit {sign}{g.max_degradation:g}"
            )
    return out, breach


def _summary(arm: Arm, mine: np.ndarray, values: Mapping[str, np.ndarray],
             stopped: bool) -> ArmSummary:
    n = int(mine.sum())
    rates = {}
    for m in RATE_METRICS:
        hits = int(values[m][mine].sum())
        rates[m] = (hits / n if n else math.nan, *wilson_interval(hits, n))
    return ArmSummary(arm.name, arm.share, arm.policy_label, n, stopped, rates,
                      mean_interval(values["revenue"][mine]))


def report(
    experiment: Experiment,
    labels: pd.DataFrame,
    *,
    stopped: Collection[str] = frozenset(),
) -> ExperimentReport:
    """Per-arm outcomes and always-valid comparisons with the control (module docstring);
    ``stopped``: the arms stopped before (they are not stopped again)."""
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise UserError(
            f"labels: missing column(s) {', '.join(missing)} (the feedback job's labels "
            "carry them from the audit records)"
        )
    rows = labels[labels["experiment"] == experiment.name]
    rows = rows.sort_values("decided_at", kind="stable")
    known = rows["arm"].isin([a.name for a in experiment.arms])
    unknown, rows = int((~known).sum()), rows[known]
    values = {m: rows[m].fillna(0).to_numpy(dtype=np.float64) for m in METRICS}
    arm_of = rows["arm"].to_numpy(dtype=object)

    comparisons, newly = [], {}
    for arm in experiment.arms:
        if arm.name != experiment.control:
            found, breach = _compare(experiment, arm.name, arm_of, values)
            comparisons += found
            if breach and arm.name not in stopped:
                newly[arm.name] = breach
    summaries = [
        _summary(a, arm_of == a.name, values, a.name in stopped or a.name in newly)
        for a in experiment.arms
    ]
    return ExperimentReport(experiment.name, experiment.control, experiment.primary_metric,
                            experiment.alpha, int(len(rows)), summaries, comparisons, unknown,
                            newly)


def _ci(low: float, high: float, digits: int = 4) -> str:
    def one(x: float) -> str:
        return f"{x:.{digits}f}" if math.isfinite(x) else ("-inf" if x < 0 else "inf")

    return f"[{one(low)}, {one(high)}]"


def format_report(r: ExperimentReport) -> str:
    """The report as a readable table."""
    lines = [
        f"experiment {r.experiment}: {r.rows} decisions, control {r.control}, "
        f"primary metric {r.primary_metric}, alpha {r.alpha:g}",
        "",
        f"{'arm':<14}{'policy':<26}{'n':>8}  {'conversion':<24}{'graduation':<24}"
        f"{'churn':<24}{'acceptance':<24}{'revenue/decision':<30}status",
    ]
    for s in r.arms:
        cells = [f"{s.rates[m][0]:.4f} {_ci(*s.rates[m][1:])}" if s.n else "-"
                 for m in ("enrolled", "graduated", "churned", "accepted")]
        revenue = f"{s.revenue[0]:.2f} {_ci(*s.revenue[1:], digits=2)}" if s.n else "-"
        lines.append(
            f"{s.arm:<14}{s.policy:<26}{s.n:>8}  " + "".join(f"{c:<24}" for c in cells)
            + f"{revenue:<30}{'STOPPED' if s.stopped else 'running'}"
        )
    if r.comparisons:
        lines += [
            "",
            f"vs {r.control} (always-valid: valid whenever you look)",
            f"{'arm':<14}{'metric':<12}{'role':<11}{'difference':>11}  "
            f"{f'{1 - r.alpha:.0%} CI':<24}{'p-value':>9}  verdict",
        ]
        for c in r.comparisons:
            lines.append(
                f"{c.arm:<14}{c.metric:<12}{c.role:<11}{c.difference:>+11.4f}  "
                f"{_ci(c.ci_low, c.ci_high):<24}{c.p_value:>9.4f}  {c.verdict}"
            )
    if r.unknown_arm_rows:
        lines.append(f"\n{r.unknown_arm_rows} decisions name an arm no longer configured")
    for arm, reason in r.newly_stopped.items():
        lines.append(f"\nstopped {arm}: {reason}; its customers now get {r.control}")
    return "\n".join(lines)


def read_labels(path: str | Path) -> pd.DataFrame:
    """Labels of the feedback job: a label store folder (``<home>/feedback``), its
    ``labels`` folder, or one Parquet file."""
    from ddso.policy.labelling import LabelStore

    path = Path(path)
    if path.is_dir() and (path / "labels").is_dir():
        return LabelStore(path).read("labels")
    if path.is_dir() and path.name == "labels" and any(path.glob("part-*.parquet")):
        return LabelStore(path.parent).read("labels")
    if not path.exists():
        raise UserError(
            f"{path}: no labels here; run the feedback job (python -m pipelines.feedback) or "
            "pass --labels PATH"
        )
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable Parquet labels file ({e})") from None


def run_report(home: str | Path, experiment: Experiment, labels_path: str | Path
               ) -> ExperimentReport:
    """Read the labels, report, and record the arms the report stops."""
    labels = read_labels(labels_path)
    try:
        result = report(experiment, labels, stopped=read_stopped(home, experiment.name))
    except UserError as e:
        raise UserError(f"{labels_path}: {e}") from None
    if result.newly_stopped:
        record_stops(home, experiment.name, result.newly_stopped)
    return result
