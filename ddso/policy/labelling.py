"""Labels that keep up with the outcomes: incremental attribution and the label store.

:class:`LabelBook` holds the decisions and distinct outcomes seen so far and, when new ones
arrive, recomputes :func:`ddso.policy.attribution.attribute` for the customers they touch
only. Attribution never looks across customers (a decision and its outcomes share the
customer's pseudonym), so the labels it keeps are exactly those of one batch attribution over
everything seen so far, whatever the arrival order: a late outcome, or a decision whose audit
record arrives after its outcome, changes the labels it would have changed on time (tested
against the batch function on shuffled arrivals).

:class:`LabelStore` keeps what the book emits under a folder, append-only and idempotent::

    labels/part-<seq>.parquet     changed label rows, newest seq wins per decision
    outcomes/part-<seq>.parquet   distinct outcomes with the decision they went to

A reader takes the newest row of each decision; :meth:`LabelStore.compact` folds the parts
into one. The ``labelled_at`` column says when a row was last recomputed (the outcome-to-label
latency of ``ddso bench feedback``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ddso.pii import pseudonymise
from ddso.policy.attribution import (
    DECISION_COLUMNS,
    DEFAULT_REWARD,
    DEFAULT_WINDOW_S,
    OUTCOME_COLUMNS,
    OUTCOME_LABELS,
    attribute,
)

EXTRA_DECISION_COLUMNS = ("explored", "experiment", "arm", "features", "facts", "decision")
"""Audit columns carried into the labels when present (the context and the logged decision
of the bandit's updates, the experiment arm of the reports)."""


class LabelBook:
    """Incremental attribution (see the module docstring). Not thread-safe."""

    def __init__(self, *, window_s: float = DEFAULT_WINDOW_S,
                 reward: Mapping[str, float] = DEFAULT_REWARD):
        self.window_s = window_s
        self.reward = dict(reward)
        self.decisions = pd.DataFrame(columns=[*DECISION_COLUMNS, *EXTRA_DECISION_COLUMNS])
        self.outcomes = pd.DataFrame(columns=list(OUTCOME_COLUMNS))
        self._labels: dict[str, tuple] = {}  # decision id -> its label values, to emit changes

    def __len__(self) -> int:
        return len(self.decisions)

    def add(self, decisions: pd.DataFrame | None = None, outcomes: pd.DataFrame | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Take new decisions and outcomes (repeats are ignored); return the label rows that
        changed and the attribution of the customers' outcomes that were recomputed."""
        touched: set[str] = set()
        if decisions is not None and len(decisions):
            new = decisions[~decisions["decision_id"].isin(self.decisions["decision_id"])]
            new = new.drop_duplicates("decision_id")
            if len(new):
                keep = [c for c in self.decisions.columns if c in new.columns]
                self.decisions = pd.concat([self.decisions, new[keep]], ignore_index=True)
                touched.update(new["customer_pseudonym"])
                # outcomes that named one of them before it was known (even another
                # customer's: that mismatch takes the credit away from their last touch)
                naming = self.outcomes["decision_id"].isin(new["decision_id"])
                touched.update(self.outcomes.loc[naming, "customer_pseudonym"])
        if outcomes is not None and len(outcomes):
            new = outcomes[~outcomes["event_id"].isin(self.outcomes["event_id"])]
            new = new.drop_duplicates("event_id")
            if len(new):
                self.outcomes = pd.concat([self.outcomes, new[list(OUTCOME_COLUMNS)]],
                                          ignore_index=True)
                touched.update(new["customer_pseudonym"])
        if not touched:
            return _empty_labels(), self.outcomes.iloc[:0].assign(attributed_to=[], rule=[])
        keys = list(touched)
        out = self.outcomes[self.outcomes["customer_pseudonym"].isin(keys)]
        # another customer's decision an outcome names must be there for the rule to see
        # the mismatch; its own labels are not recomputed here (they do not depend on it)
        mine = self.decisions["customer_pseudonym"].isin(keys)
        dec = self.decisions[mine | self.decisions["decision_id"].isin(out["decision_id"])]
        result = attribute(dec, out, window_s=self.window_s, reward=self.reward)
        dec = dec[dec["customer_pseudonym"].isin(keys)]
        labels = result.labels[result.labels["decision_id"].isin(dec["decision_id"])].merge(
            dec[["decision_id", *[c for c in EXTRA_DECISION_COLUMNS if c in dec.columns]]],
            on="decision_id", how="left")
        changed = np.array([self._changed(row) for row in
                            labels[list(_COMPARED)].itertuples(index=False, name=None)],
                           dtype=bool)
        return labels[changed].reset_index(drop=True), result.outcomes

    def remember(self, labels: pd.DataFrame) -> None:
        """Take ``labels`` as already emitted (a restart primes the book with its store), so
        that only rows that differ from them are emitted again."""
        if len(labels):
            for row in labels[list(_COMPARED)].itertuples(index=False, name=None):
                self._labels[row[0]] = row

    def _changed(self, row: tuple) -> bool:
        if self._labels.get(row[0]) == row:
            return False
        self._labels[row[0]] = row
        return True


_COMPARED = ("decision_id", "accepted", "enrolled", "graduated", "churned", "purchased",
             "revenue", "outcomes", "reward")


def _empty_labels() -> pd.DataFrame:
    return pd.DataFrame(columns=[*DECISION_COLUMNS, *_COMPARED[1:], *EXTRA_DECISION_COLUMNS])


class LabelStore:
    """The book's output as Parquet parts under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _next_seq(self) -> int:
        parts = sorted((self.root / "labels").glob("part-*.parquet"))
        return int(parts[-1].stem.split("-")[1]) + 1 if parts else 0

    def write(self, labels: pd.DataFrame, outcomes: pd.DataFrame) -> int:
        """Append one part of each (labels stamped ``labelled_at`` now); returns its seq."""
        seq = self._next_seq()
        stamped = labels.assign(labelled_at=time.time())
        # Outcomes first: a reader that sees a label part can always find its outcomes.
        self._write(outcomes, "outcomes", seq)
        self._write(stamped, "labels", seq)
        return seq

    def _write(self, frame: pd.DataFrame, kind: str, seq: int) -> None:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        tmp = folder / f".part-{seq:012d}.{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, folder / f"part-{seq:012d}.parquet")

    def read(self, kind: str = "labels", columns: list[str] | None = None) -> pd.DataFrame:
        """The newest row per decision (labels) or per outcome event (outcomes)."""
        key = "decision_id" if kind == "labels" else "event_id"
        parts = sorted((self.root / kind).glob("part-*.parquet"))
        if not parts:
            return _empty_labels() if kind == "labels" else pd.DataFrame(
                columns=[*OUTCOME_COLUMNS, "attributed_to", "rule"])
        wanted = None if columns is None else list(dict.fromkeys([key, *columns]))
        frames = [pq.read_table(p, columns=wanted).to_pandas() for p in parts]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.read_parquet(parts[0], columns=wanted)
        frame = pd.concat(frames, ignore_index=True)
        return frame.drop_duplicates(key, keep="last").reset_index(drop=True)

    def compact(self) -> None:
        """Fold every part into one (same content for readers; fewer files)."""
        for kind in ("outcomes", "labels"):
            parts = sorted((self.root / kind).glob("part-*.parquet"))
            if len(parts) < 2:
                continue
            frame = self.read(kind)
            seq = int(parts[-1].stem.split("-")[1])
            self._write(frame, kind, seq)  # replaces the newest part with the whole
            for p in parts[:-1]:
                p.unlink()


def outcomes_from_events(events: list, pii_key: bytes) -> pd.DataFrame:
    """Outcome rows (:data:`~ddso.policy.attribution.OUTCOME_COLUMNS`) of parsed events; other
    event types are left out. The customer id becomes its keyed pseudonym here."""
    rows = []
    for e in events:
        kind = e.type
        if kind not in OUTCOME_LABELS:
            continue
        rows.append((e.event_id, kind, pseudonymise(e.customer_id, pii_key, kind="customer"),
                     e.event_time.timestamp(), getattr(e, "decision_id", None),
                     e.total if kind == "purchase" else np.nan))
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))


def read_decisions(files: list[Path]) -> pd.DataFrame:
    """The attribution columns of audit files (older files without the experiment columns
    read with them empty)."""
    wanted = [*DECISION_COLUMNS, *EXTRA_DECISION_COLUMNS]
    frames = []
    for f in files:
        names = pq.read_schema(f).names
        frame = pq.read_table(f, columns=[c for c in wanted if c in names]).to_pandas()
        frames.append(frame.reindex(columns=wanted))
    if not frames:
        return pd.DataFrame(columns=wanted)
    return pd.concat(frames, ignore_index=True)


def outcomes_from_offline(table: pa.Table, pii_key: bytes) -> pd.DataFrame:
    """Outcome rows from offline-store rows (``event_id``, ``customer_id``, ``type``,
    ``event_time``, ``lines``, ``payload``): the same rows :func:`outcomes_from_events` gives
    for those events."""
    frame = table.to_pandas()
    frame = frame[frame["type"].isin(list(OUTCOME_LABELS))]
    if not len(frame):
        return pd.DataFrame(columns=list(OUTCOME_COLUMNS))

    def value(lines) -> float:
        if lines is None or len(lines) == 0:
            return np.nan
        return float(sum(ln["quantity"] * ln["unit_price"] * (1 - ln["discount"])
                         for ln in lines))

    return pd.DataFrame({
        "event_id": frame["event_id"].to_numpy(),
        "type": frame["type"].to_numpy(),
        "customer_pseudonym": [pseudonymise(c, pii_key, kind="customer")
                               for c in frame["customer_id"]],
        "event_time": frame["event_time"].map(lambda t: t.timestamp()).to_numpy(dtype=float),
        "decision_id": [json.loads(p).get("decision_id") for p in frame["payload"]],
        "value": [value(ln) if t == "purchase" else np.nan
                  for t, ln in zip(frame["type"], frame["lines"], strict=True)],
    })
