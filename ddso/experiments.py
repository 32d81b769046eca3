"""Experiments: A/B and champion/challenger splits of the decision policy, by customer.

An :class:`Experiment` (settings key ``experiments``) splits customers between arms, each
deciding with its own engagement policy: the registry's champion, a given registry version,
or the propensity x value rule (``policy_version: rules``). At most one experiment is active.

Assignment (:func:`assign`) is deterministic and sticky: SHA-256 of the experiment name and
the customer's pseudonym (the audit record's ``customer_pseudonym``) gives a number ``u`` in
[0, 1), and the arms, in their configured order, own consecutive slices of [0, 1) as wide as
their shares. A customer keeps their arm for as long as the configuration does; experiments
are independent of each other (the name is hashed too). Changing shares moves only the
customers whose ``u`` lies between an old and a new boundary: growing an arm by taking from
the arm right after it moves exactly the customers in the slice between the two boundaries
from the latter to the former, and nobody else; changing the share of an arm in the middle
shifts every later boundary, so change shares between neighbouring arms (or append a new arm
at the end, taking from the last). Rotating the pseudonym key reshuffles every assignment.

The report of an experiment (per-arm outcomes, always-valid comparisons with the control
arm, guardrails that stop an arm) is :mod:`ddso.experiment_report`.

Conclusion: the retraining job judges a champion/challenger experiment
(``python -m pipelines.retrain --experiment NAME``, :func:`ddso.policy.challenger.gate_experiment`)
and records the verdict in the same state file; from then on the experiment routes nobody and
every customer gets the registry's champion, the promoted challenger when it won.

Guardrails: an arm whose always-valid interval shows a guardrail metric worse than the
control's by more than the guardrail allows is stopped. Stops are kept in
``<home>/experiments/<name>.json`` (written atomically, never undone by a later report; edit
or delete the file to restart an arm); the decision service re-reads that file every few
seconds (:class:`ExperimentRouter`) and sends a stopped arm's customers to the control arm.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ddso.errors import UserError

RULES = "rules"
"""``policy_version`` of an arm that decides with the propensity x value rule."""
Metric = Literal["enrolled", "graduated", "churned", "accepted", "revenue"]
HIGHER_IS_WORSE = frozenset({"churned"})
DEFAULT_MIXING_SD = 0.05
"""mSPRT mixing sd (:mod:`ddso.sequential`), in standard deviations of the metric per
decision: tuned to a conversion rate of 1 % (sd ~0.1) moving by half a point, the size of the
seeds' headline lifts."""
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Arm(_Model):
    """One arm: its slice of the customers and the policy deciding for them."""

    name: str = Field(pattern=_NAME, description="Arm name, recorded in every audit record.")
    share: float = Field(ge=0.0, le=1.0, description="Share of customers, in [0, 1].")
    policy_version: str | None = Field(
        None,
        description="Engagement policy: None for the registry's champion, a registry version "
        "(e.g. v0003 or engagement_policy:v0003), or 'rules' for the propensity x value rule.",
    )

    @property
    def policy_label(self) -> str:
        if self.policy_version is None:
            return "champion"
        return "rule" if self.policy_version == RULES else self.policy_version


class Guardrail(_Model):
    """A metric no arm may degrade, against the control arm, by more than ``max_degradation``;
    an arm shown to (by the always-valid interval) is stopped."""

    metric: Metric
    max_degradation: float = Field(
        ge=0.0,
        description="Largest tolerated degradation vs control, absolute in the metric's units "
        "(a rate difference, or revenue per decision).",
    )
    worse: Literal["higher", "lower"] | None = Field(
        None, description="Which direction is a degradation; default: higher for churned, "
        "lower for the others."
    )

    @property
    def higher_is_worse(self) -> bool:
        return self.worse == "higher" if self.worse else self.metric in HIGHER_IS_WORSE


class Experiment(_Model):
    """An experiment's configuration (see the module docstring)."""

    name: str = Field(pattern=_NAME)
    arms: list[Arm] = Field(min_length=2)
    control: str = Field(description="The arm the others are compared with.")
    primary_metric: Metric = "enrolled"
    guardrails: list[Guardrail] = Field(default_factory=list)
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="Error rate of every test.")
    mixing_sd: float = Field(
        DEFAULT_MIXING_SD, gt=0.0, description="mSPRT mixing sd, in sds of the metric."
    )
    active: bool = Field(True, description="Serving assigns customers only while active.")
    start: datetime | None = Field(None, description="Assign from this time (UTC) on.")
    end: datetime | None = Field(None, description="Assign until this time (UTC).")

    @field_validator("arms")
    @classmethod
    def _shares(cls, arms: list[Arm]) -> list[Arm]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        total = math.fsum(a.share for a in arms)
        if abs(total - 1.0) > 1e-9:
            shares = ", ".join(f"{a.name}: {a.share:g}" for a in arms)
            raise ValueError(f"arm shares must sum to 1, got {total:g} ({shares})")
        return arms

    @model_validator(mode="after")
    def _control_and_window(self) -> Experiment:
        names = [a.name for a in self.arms]
        if self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the arms {names}")
        if self.start and self.end and _utc(self.end) <= _utc(self.start):
            raise ValueError(f"end {self.end} must come after start {self.start}")
        return self

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def running(self, at: float) -> bool:
        """Whether customers are assigned at ``at`` (epoch seconds)."""
        if not self.active:
            return False
        when = datetime.fromtimestamp(at, UTC)
        return (self.start is None or _utc(self.start) <= when) and (
            self.end is None or when < _utc(self.end)
        )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _named(value: Any) -> Any:
    """Experiments are configured as ``name: {...}``; the key is the experiment's name."""
    if not isinstance(value, Mapping):
        return value
    out = {}
    for key, spec in value.items():
        if isinstance(spec, Mapping):
            if spec.get("name", key) != key:
                raise ValueError(f"experiment {key!r} names itself {spec['name']!r}")
            spec = {**spec, "name": key}
        out[key] = spec
    return out


def _one_active(experiments: dict[str, Experiment]) -> dict[str, Experiment]:
    active = [name for name, e in experiments.items() if e.active]
    if len(active) > 1:
        raise ValueError(
            f"at most one experiment may be active, got {len(active)}: {', '.join(active)}; "
            "set active: false on the others"
        )
    return experiments


Experiments = Annotated[
    dict[str, Experiment], BeforeValidator(_named), AfterValidator(_one_active)
]
"""The ``experiments`` setting: name -> experiment, at most one active."""


def active_experiment(experiments: Mapping[str, Experiment]) -> Experiment | None:
    return next((e for e in experiments.values() if e.active), None)


def find_experiment(experiments: Mapping[str, Experiment], name: str) -> Experiment:
    if name not in experiments:
        known = ", ".join(sorted(experiments)) or "none"
        raise UserError(
            f"experiments: no experiment {name!r} in the configuration (configured: {known})"
        )
    return experiments[name]


# --- assignment -------------------------------------------------------------------------------


def bucket(experiment_name: str, pseudonym: str) -> float:
    """The customer's number in [0, 1) for this experiment (SHA-256, 64 bits)."""
    digest = hashlib.sha256(f"{experiment_name}\x00{pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(
    experiment: Experiment, pseudonym: str, stopped: frozenset[str] | set[str] = frozenset()
) -> Arm:
    """The arm of the customer with ``pseudonym`` (see the module docstring); a customer of a
    ``stopped`` arm gets the control arm."""
    u = bucket(experiment.name, pseudonym)
    edge = 0.0
    chosen = None
    for arm in experiment.arms:
        edge += arm.share
        if u < edge:
            chosen = arm
            break
    if chosen is None:  # the shares' float sum fell a hair short of 1: the last open arm
        chosen = next(a for a in reversed(experiment.arms) if a.share > 0)
    if chosen.name in stopped:
        return experiment.arm(experiment.control)
    return chosen


# --- stopped arms -----------------------------------------------------------------------------


def state_path(home: str | Path, name: str) -> Path:
    return Path(home) / "experiments" / f"{name}.json"


def read_state(home: str | Path, name: str) -> dict[str, Any]:
    """The experiment's state file: ``stopped`` arms and, once judged, ``concluded``."""
    path = state_path(home, name)
    try:
        state = json.loads(path.read_text())
        return {"stopped": dict(state["stopped"]), "concluded": state.get("concluded")}
    except FileNotFoundError:
        return {"stopped": {}, "concluded": None}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a readable experiment state file ({e})") from None


def read_stopped(home: str | Path, name: str) -> dict[str, dict[str, Any]]:
    """Stopped arms of experiment ``name``: arm -> {"at": ISO time, "reason": text}."""
    return read_state(home, name)["stopped"]


def _write_state(home: str | Path, name: str, state: Mapping[str, Any]) -> None:
    """Written to a temporary file and renamed, so a reader never sees half a file."""
    path = state_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"experiment": name, **state}, indent=2) + "\n")
    os.replace(tmp, path)


def record_stops(home: str | Path, name: str, stops: Mapping[str, str]) -> dict[str, Any]:
    """Add ``stops`` (arm -> reason) to the experiment's stopped arms; all of them."""
    state = read_state(home, name)
    now = datetime.now(UTC).isoformat()
    for arm, reason in stops.items():
        state["stopped"].setdefault(arm, {"at": now, "reason": reason})
    _write_state(home, name, state)
    return state["stopped"]


def record_conclusion(home: str | Path, name: str, winner: str | None, reason: str,
                      promoted: str | None = None) -> dict[str, Any]:
    """Conclude the experiment: from now on serving assigns nobody to its arms, so every
    customer gets the champion (``promoted``, when the winner's policy was promoted)."""
    state = read_state(home, name)
    state["concluded"] = {"at": datetime.now(UTC).isoformat(), "winner": winner,
                          "promoted": promoted, "reason": reason}
    _write_state(home, name, state)
    return state["concluded"]


class ExperimentRouter:
    """The serving side of an experiment: the arm of each decision, honouring stops.

    The stopped arms and the conclusion are re-read from the state file when it changed, at
    most every ``refresh_s`` seconds, so a stop recorded by ``ddso experiments report`` (or a
    conclusion by the retraining job) reaches every replica within that time; a concluded
    experiment routes nobody. Thread-safe.
    """

    def __init__(self, experiment: Experiment, home: str | Path, *, refresh_s: float = 5.0):
        self.experiment = experiment
        self.home = Path(home)
        self.refresh_s = refresh_s
        self._path = state_path(home, experiment.name)
        self._stamp: int | None = None
        self._checked = -math.inf
        self._lock = threading.Lock()
        self.stopped: frozenset[str] = frozenset()
        self.concluded = False
        self._refresh(time.monotonic())

    def _refresh(self, now: float) -> None:
        if now - self._checked < self.refresh_s:  # the common case, without the lock
            return
        with self._lock:
            if now - self._checked < self.refresh_s:
                return
            self._checked = now
            try:
                stamp = self._path.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp == self._stamp:
                return
            self._stamp = stamp
            state = read_state(self.home, self.experiment.name)
            self.stopped = frozenset(state["stopped"])
            self.concluded = state["concluded"] is not None

    def route(self, pseudonym: str, at: float) -> Arm | None:
        """The arm deciding for this customer at ``at`` (epoch s); None outside the run."""
        if not self.experiment.running(at):
            return None
        self._refresh(time.monotonic())
        if self.concluded:
            return None
        return assign(self.experiment, pseudonym, self.stopped)
