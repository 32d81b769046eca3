"""``ddso report``: one self-contained HTML page of what the platform learned and did.

:func:`write_report` writes ``<out>/index.html`` and the PNG plots it links (relative links,
no scripts, no CDN: the folder can be copied or served as it is). Each section is drawn from
what is there and, where its input is missing, says so and how to make it instead of failing:

- **Models**: every binary model of the registry (:mod:`ddso.models.binary`): the test-period
  metrics of its versions, and ROC and calibration curves of the champion drawn from the
  version's own ``test_predictions.parquet``.
- **Engagement policy**: the learning curve of each registered policy version, and its
  evaluation next to business as usual.
- **Uplift by segment**: conversion (enrolment) of contacted vs not-contacted decisions per
  segment (the labels' ``segment``, else the health band the decision saw), naive and
  IPS-weighted (:func:`uplift_by_segment`).
- **Experiments**: cumulative conversion of each arm by day, with a 95% Wilson band.
- **Decisions**: the audit log by day: decisions, contacts, exploration.

The inputs: the model registry, the label store of ``python -m pipelines.feedback`` (its
folder, or one Parquet file of label rows) and the decision audit folder.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ddso import experiment_report
from ddso.errors import DataFileError, UserError
from ddso.experiments import Experiment, read_stopped
from ddso.models.binary import TEST_PREDICTIONS_FILE
from ddso.models.registry import ModelRegistry, ModelVersion
from ddso.policy.uplift import decision_facts, uplift_by_segment
from ddso.sequential import wilson_interval

CONVERSION = "enrolled"
"""The label the report calls conversion: an enrolment attributed to the decision."""
LABEL_COLUMNS = ("decision_id", "decided_at", "channel", CONVERSION)
AUDIT_COLUMNS = ("decision_id", "decided_at", "channel", "explored", "decision")
MAX_VERSIONS = 10
"""Versions listed per model, newest first."""


# --- inputs ----------------------------------------------------------------------------------


def _epoch_seconds(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return (pd.to_datetime(values, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(1, "s")
    return values.astype(float)


def read_labels(path: Path) -> pd.DataFrame | None:
    """Label rows from a label store folder or a Parquet file; None if ``path`` does not exist.

    A file that is not Parquet, or rows without the columns the report reads, raise
    :class:`~ddso.errors.UserError` naming the file and the rule.
    """
    if not path.exists():
        return None
    frame = experiment_report.read_labels(path)
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: label rows need column(s) {', '.join(missing)}; write "
                            "them with python -m pipelines.feedback")
    y = pd.to_numeric(frame[CONVERSION], errors="coerce")
    if not y.isin((0, 1)).all():
        raise DataFileError(f"{path}: column {CONVERSION!r} must hold 0 or 1 only")
    return frame.assign(**{CONVERSION: y.astype(int),
                           "decided_at": _epoch_seconds(frame["decided_at"])})


def read_audit(directory: Path) -> pd.DataFrame | None:
    """The audit records' columns the report reads; None if there are no audit files."""
    files = sorted(directory.glob("audit-*.parquet")) if directory.is_dir() else []
    if not files:
        return None
    frames = []
    for f in files:
        try:
            frames.append(pq.read_table(f, columns=list(AUDIT_COLUMNS)).to_pandas())
        except (pa.ArrowException, OSError) as e:
            raise DataFileError(f"{f}: not an audit file with columns "
                                f"{', '.join(AUDIT_COLUMNS)} ({e})") from None
    return pd.concat(frames, ignore_index=True).drop_duplicates("decision_id")


# --- computations ----------------------------------------------------------------------------


def cumulative_by_arm(labels: pd.DataFrame) -> pd.DataFrame:
    """Per experiment, arm and day (UTC, of ``decided_at``): cumulative decisions,
    conversions, the rate and its 95% Wilson interval. Rows without an arm are left out."""
    frame = labels[labels["arm"].notna()]
    experiment = (frame["experiment"].astype("string").fillna("(none)")
                  if "experiment" in frame else pd.Series("(none)", index=frame.index))
    daily = (frame.assign(experiment=experiment, arm=frame["arm"].astype(str),
                          day=pd.to_datetime(frame["decided_at"], unit="s", utc=True)
                          .dt.floor("D"))
             .groupby(["experiment", "arm", "day"])[CONVERSION].agg(["size", "sum"]))
    cum = daily.groupby(level=["experiment", "arm"]).cumsum()
    cum.columns = ["decisions", "conversions"]
    low, high = np.array([wilson_interval(int(x), int(n)) for x, n in
                          zip(cum["conversions"], cum["decisions"], strict=True)]).T
    return cum.assign(rate=cum["conversions"] / cum["decisions"], ci_low=low,
                      ci_high=high).reset_index()


# --- HTML and plots --------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    return plt


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, na_rep="–", classes="numbers",
                         float_format=lambda v: f"{v:.4f}")


def _image(fig, out: Path, name: str, alt: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    _pyplot().close(fig)
    return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">'


def _reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean prediction and observed rate of equal-count bins (as ``calibration_error`` bins)."""
    chunks = np.array_split(np.argsort(p, kind="stable"), min(bins, len(p)))
    return (np.array([p[c].mean() for c in chunks]), np.array([y[c].mean() for c in chunks]))


def _curves(version: ModelVersion, out: Path) -> str:
    from sklearn.metrics import roc_curve

    path = version.artifact(TEST_PREDICTIONS_FILE)
    try:
        pred = pd.read_parquet(path, columns=["label", "raw", "calibrated"])
    except (pa.ArrowException, OSError) as e:
        raise DataFileError(f"{path}: test predictions need columns label, raw, calibrated "
                            f"({e})") from None
    y = pred["label"].to_numpy(float)
    if y.min() == y.max():
        return _note(f"{version.version}: the test rows have one class only; no curves")
    plt = _pyplot()
    fig, (roc, cal) = plt.subplots(1, 2, figsize=(10, 4))
    for column, style in (("calibrated", "-"), ("raw", ":")):
        fpr, tpr, _ = roc_curve(y, pred[column])
        roc.plot(fpr, tpr, style, label=column)
        mean_p, rate = _reliability(y, pred[column].to_numpy(float))
        cal.plot(mean_p, rate, style + "o", label=column, markersize=4)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.5)
    roc.set(xlabel="false positive rate", ylabel="true positive rate",
            title=f"ROC, {version.name} {version.version} (test period)")
    top = float(max(pred[["raw", "calibrated"]].to_numpy().max(), y.mean())) * 1.05
    cal.plot([0, top], [0, top], color="grey", lw=0.5)
    cal.set(xlabel="mean prediction (10 equal-count bins)", ylabel="observed rate",
            title="calibration", xlim=(0, top), ylim=(0, top))
    roc.legend()
    cal.legend()
    return _image(fig, out, f"model_{version.name}.png", f"ROC and calibration of {version.name}")


def _versions(registry: ModelRegistry, name: str) -> list[tuple[ModelVersion, str]]:
    return [(registry.get(name, v), registry.stage(name, v))
            for v in reversed(registry.versions(name)[-MAX_VERSIONS:])]


def _model_names(registry: ModelRegistry) -> list[str]:
    if not registry.fs.exists(registry.root):
        return []
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in registry.fs.ls(registry.root,
                                                                      detail=False))
    return sorted(n for n in names
                  if n.replace("_", "").replace("-", "").isalnum() and registry.versions(n))


_BINARY_METRICS = {"test_auc": "test AUC", "test_uncalibrated_auc": "test AUC (raw)",
                   "test_pr_auc": "PR-AUC", "test_log_loss": "log loss", "test_brier": "Brier",
                   "test_ece": "ECE", "test_rows": "test rows", "test_positives": "positives",
                   "test_positive_rate": "positive rate"}


def _binary_model(name: str, versions: list[tuple[ModelVersion, str]], out: Path) -> str:
    rows = [{"version": v.version, "stage": stage, "registered": v.metadata["created_at"][:10],
             "calibration": v.metadata.get("calibration", "–"),
             **{label: v.metadata["metrics"].get(key, np.nan)
                for key, label in _BINARY_METRICS.items()}} for v, stage in versions]
    shown = next((v for v, stage in versions if stage == "champion"), versions[0][0])
    parts = [f"<h3>{html.escape(name)}</h3>", _table(pd.DataFrame(rows))]
    if TEST_PREDICTIONS_FILE in shown.metadata.get("artifacts", {}):
        parts.append(_curves(shown, out))
    else:
        parts.append(_note(f"{name} {shown.version} was registered without test predictions "
                           "(before they were kept): retrain it to draw its curves"))
    return "\n".join(parts)


def _policy_model(name: str, versions: list[tuple[ModelVersion, str]], out: Path) -> str:
    rows = [{"version": v.version, "stage": stage, "registered": v.metadata["created_at"][:10],
             **{k: x for k, x in v.metadata.get("metrics", {}).items()
                if isinstance(x, int | float)}} for v, stage in versions]
    parts = [f"<h3>{html.escape(name)}</h3>", _table(pd.DataFrame(rows))]
    curves = [(v, stage) for v, stage in versions
              if "learning_curve.json" in v.metadata.get("artifacts", {})]
    if not curves:
        return "\n".join([*parts, _note(f"no version of {name} carries a learning curve: "
                                        "train one with python -m pipelines.train_policy")])
    plt = _pyplot()
    fig, (ret, ent) = plt.subplots(1, 2, figsize=(10, 4))
    for v, stage in curves:
        curve = pd.DataFrame(json.loads(v.artifact("learning_curve.json").read_text()))
        width = 2.0 if stage == "champion" else 1.0
        label = f"{v.version} ({stage})"
        ret.plot(curve["env_steps"], curve["episode_return_mean"], lw=width, label=label)
        ent.plot(curve["env_steps"], curve["entropy"], lw=width, label=label)
    ret.set(xlabel="env steps", ylabel="episode return (mean)", title=f"{name}: PPO return")
    ent.set(xlabel="env steps", ylabel="policy entropy", title="entropy")
    ret.legend()
    parts.append(_image(fig, out, f"policy_{name}.png", f"learning curves of {name}"))
    return "\n".join(parts)


def _models_sections(registry: ModelRegistry, out: Path) -> tuple[str, str]:
    names = _model_names(registry)
    if not names:
        missing = _note(f"no models in the registry {registry.uri} yet: run "
                        "python -m pipelines.train_propensity (or ddso up)")
        return missing, _note("no engagement policy registered: run "
                              "python -m pipelines.train_policy")
    binary, policies = [], []
    for name in names:
        versions = _versions(registry, name)
        if any("policy.npz" in v.metadata.get("artifacts", {}) for v, _ in versions):
            policies.append(_policy_model(name, versions, out))
        elif "test_auc" in versions[0][0].metadata.get("metrics", {}):
            binary.append(_binary_model(name, versions, out))
        else:
            rows = [{"version": v.version, "stage": s, **{
                k: x for k, x in v.metadata.get("metrics", {}).items()
                if isinstance(x, int | float | str)}} for v, s in versions]
            binary.append(f"<h3>{html.escape(name)}</h3>" + _table(pd.DataFrame(rows)) + _note(
                f"{name} keeps no test predictions (not trained through the binary lifecycle, "
                "e.g. ddso train propensity): metrics only"))
    return ("\n".join(binary) or _note("no binary models in the registry"),
            "\n".join(policies) or _note("no engagement policy registered: run "
                                         "python -m pipelines.train_policy"))


_NO_LABELS = "no labels yet: run python -m pipelines.feedback"


def _uplift_section(labels: pd.DataFrame | None, facts: pd.DataFrame | None, out: Path) -> str:
    if labels is None or labels.empty:
        return _note(_NO_LABELS)
    notes = []
    if facts is not None:
        labels = labels.merge(facts, on="decision_id", how="left",
                              suffixes=("", "_audit"))
    else:
        notes.append("no audit records: the contact probabilities (and bands) come from "
                     "them, so the IPS columns are empty")
    if "segment" in labels and labels["segment"].notna().any():
        segment = "segment"
    elif "band" in labels and labels["band"].notna().any():
        segment = "band"
        notes.append("the labels have no segment column: segments are the health band "
                     "(A-E) each decision saw")
    else:
        segment = None
        notes.append("no segment or band for these decisions: all decisions as one segment")
    table = uplift_by_segment(labels, segment, CONVERSION)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["uplift"], 0.4, label="naive")
    err = np.abs(table[["ips_ci_low", "ips_ci_high"]].to_numpy().T - table["ips_uplift"].to_numpy())
    ax.bar(x + 0.2, table["ips_uplift"], 0.4, yerr=err, capsize=3, label="IPS (95% CI)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xticks(x, table["segment"])
    ax.set(ylabel=f"uplift in {CONVERSION} rate", title="contacted minus not contacted")
    ax.legend()
    return "\n".join([
        _note(f"conversion = {CONVERSION} within the attribution window; uplift = contacted "
              "minus not-contacted conversion; IPS weighs each decision by the inverse of the "
              "logging policy's probability of contacting (or not) that customer"),
        *map(_note, notes), _table(table),
        _image(fig, out, "uplift.png", "uplift by segment")])


def _configured(experiment: Experiment, labels: pd.DataFrame, home: Path | None) -> str:
    """The experiment report's per-arm table and always-valid comparisons (read-only: the
    stops it would record are only shown)."""
    try:
        stopped = read_stopped(home, experiment.name) if home is not None else {}
        r = experiment_report.report(experiment, labels, stopped=stopped)
    except UserError as e:
        return _note(f"experiment {experiment.name}: no report ({e})")
    arms = pd.DataFrame([{
        "arm": a.arm, "policy": a.policy, "decisions": a.n, "conversion": a.rates[CONVERSION][0],
        "95% low": a.rates[CONVERSION][1], "95% high": a.rates[CONVERSION][2],
        "status": "stopped" if a.stopped else "running"} for a in r.arms])
    parts = [_table(arms)]
    if r.comparisons:
        parts += [_note(f"vs the control arm {r.control!r}: always-valid {1 - r.alpha:.0%} "
                        "intervals (valid however often the report is read)"),
                  _table(pd.DataFrame([asdict(c) for c in r.comparisons]))]
    parts += [_note(f"{arm}: guardrail breached, {why}") for arm, why in r.newly_stopped.items()]
    return "\n".join(parts)


def _experiments_section(labels: pd.DataFrame | None, experiments: Mapping[str, Experiment],
                         home: Path | None, out: Path) -> str:
    if labels is None or labels.empty:
        return _note(_NO_LABELS)
    if "arm" not in labels or labels["arm"].isna().all():
        return _note("no decision carries an experiment arm: the labels' arm column is empty")
    cum = cumulative_by_arm(labels)
    names = list(dict.fromkeys(cum["experiment"]))
    parts = [_note("cumulative conversion of each arm by day (UTC) of decision, with its 95% "
                   "Wilson interval")]
    for name in names:
        parts.append(f"<h3>experiment {html.escape(name)}</h3>")
        if name in experiments:
            parts.append(_configured(experiments[name], labels, home))
        else:
            last = cum[cum["experiment"] == name].groupby("arm").tail(1)
            parts += [_note(f"{name} is not in the settings' experiments: per-arm rates only, "
                            "no comparison with a control"),
                      _table(last.assign(day=last["day"].dt.strftime("%Y-%m-%d")))]
    plt = _pyplot()
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 3.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for arm, rows in cum[cum["experiment"] == name].groupby("arm"):
            days = rows["day"].dt.tz_localize(None)
            ax.step(days, rows["rate"], where="post", label=str(arm))
            ax.fill_between(days, rows["ci_low"], rows["ci_high"], step="post", alpha=0.2)
        ax.set(ylabel=f"cumulative {CONVERSION} rate", title=f"experiment {name}")
        ax.legend()
    fig.autofmt_xdate()
    parts.append(_image(fig, out, "experiments.png", "cumulative conversion per arm"))
    return "\n".join(parts)


def _decisions_section(audit: pd.DataFrame | None, audit_dir: Path, out: Path) -> str:
    if audit is None or audit.empty:
        return _note(f"no audit records in {audit_dir}: decisions are audited by the server "
                     "(ddso up)")
    frame = audit.assign(day=pd.to_datetime(_epoch_seconds(audit["decided_at"]), unit="s",
                                            utc=True).dt.floor("D"),
                         contacted=audit["channel"].notna(),
                         explored=audit["explored"].fillna(False).astype(bool))
    daily = frame.groupby("day").agg(decisions=("decision_id", "size"),
                                     contacted=("contacted", "sum"),
                                     explored=("explored", "sum")).reset_index()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    days = daily["day"].dt.tz_localize(None)
    ax.bar(days, daily["contacted"], label="contacted")
    ax.bar(days, daily["decisions"] - daily["contacted"], bottom=daily["contacted"],
           label="no contact")
    ax.plot(days, daily["explored"], "k.-", label="explored")
    ax.set(ylabel="decisions per day")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.autofmt_xdate()
    totals = pd.DataFrame([{"decisions": len(frame), "days": len(daily),
                            "contacted share": frame["contacted"].mean(),
                            "explored share": frame["explored"].mean()}])
    return "\n".join([_table(totals),
                      _image(fig, out, "decisions.png", "audited decisions per day")])


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table.numbers{border-collapse:collapse;margin:.5em 0}
table.numbers td,table.numbers th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}
p.note{color:#555;font-style:italic}img{max-width:100%}"""

SECTIONS = (("models", "Models"), ("policy", "Engagement policy"),
            ("uplift", "Uplift by segment"), ("experiments", "Experiments"),
            ("decisions", "Decisions"))


def _page(body: dict[str, str], inputs: Iterable[tuple[str, str]]) -> str:
    toc = "".join(f'<li><a href="#{key}">{title}</a></li>' for key, title in SECTIONS)
    given = "".join(f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>"
                    for k, v in inputs)
    sections = "\n".join(f'<h2 id="{key}">{title}</h2>\n{body[key]}' for key, title in SECTIONS)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>ddso report</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>ddso report</h1><p>generated {now} from</p><ul>{given}</ul>"
            f"<ul>{toc}</ul>\n{sections}\n</body></html>\n")


def _writable(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"report --out {out}: cannot write there ({e.strerror or e}); "
                        "choose a writable folder") from None
    return out


def write_report(out: str | Path, *, registry: str, labels: str | Path, audit: str | Path,
                 experiments: Mapping[str, Experiment] | None = None,
                 home: str | Path | None = None) -> Path:
    """Write ``<out>/index.html`` and its plots from what the inputs hold; return its path.

    ``experiments`` (the settings' experiments by name) get the always-valid comparison of
    :func:`ddso.experiment_report.report`, with the arms stopped so far under ``home``.
    """
    out = _writable(Path(out))
    labels_path, audit_dir = Path(labels), Path(audit)
    label_rows = read_labels(labels_path)
    audit_rows = read_audit(audit_dir)
    facts = decision_facts(audit_rows) if audit_rows is not None else None
    models, policy = _models_sections(ModelRegistry(registry), out)
    body = {"models": models, "policy": policy,
            "uplift": _uplift_section(label_rows, facts, out),
            "experiments": _experiments_section(label_rows, experiments or {},
                                                None if home is None else Path(home), out),
            "decisions": _decisions_section(audit_rows, audit_dir, out)}
    index = out / "index.html"
    index.write_text(_page(body, [("registry", registry), ("labels", str(labels_path)),
                                  ("audit", str(audit_dir))]))
    return index
