"""The feedback job: outcomes -> the decisions that earned them -> labels and bandit rows.

It reads the events topic (or the local log) as its own consumer group, keeps the outcome
events (offer accepted, enrollment, graduation, churn, purchase; every other type is
skipped), picks up the decision audit files as the servers write them, and attributes with
:class:`ddso.policy.labelling.LabelBook` (the named decision, else last touch within the
window). Changed labels go to the label store (``<home>/feedback`` by default) before the
offsets are committed, so a crash replays into the same labels. On start the book is rebuilt
from the store's outcomes and every audit file, so a restart loses nothing either.

    python -m pipelines.feedback                    # follow the stream until stopped
    python -m pipelines.feedback --source offline   # one pass over the offline store
    ray job submit --working-dir . -- python -m pipelines.feedback --idle-exit-s 60

The labels feed the propensity and churn training sets and the policy's off-policy
evaluation (``pipelines.retrain``); the experiment reports read them too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ddso.config import Settings, load_settings
from ddso.errors import UserError
from ddso.io.sources import KafkaSource, LocalLogSource, Source
from ddso.models.registry import ModelRegistry, PromotionRefused
from ddso.policy.attribution import OUTCOME_LABELS
from ddso.policy.bandit import KIND as BANDIT_KIND
from ddso.policy.bandit import BanditPolicy, OnlineBandit, context, register_candidate
from ddso.policy.challenger import METRIC, Comparison, gate
from ddso.policy.decide import POLICY_MODEL
from ddso.policy.labelling import (
    LabelBook,
    LabelStore,
    outcomes_from_events,
    outcomes_from_offline,
    read_decisions,
)
from ddso.stores.offline import OfflineStore
from ddso.stream import parse_batch
from pipelines._cli import run

log = logging.getLogger(__name__)

GROUP = "ddso-feedback"


@dataclass
class Args:
    config: str | None = None
    """YAML settings file (default: $DDSO_CONFIG, if set)."""
    source: str = "stream"
    """Where outcomes come from: 'stream' (the events topic or local log, followed) or
    'offline' (one pass over the offline store, then exit)."""
    audit: str | None = None
    """Decision audit folder (default: <home>/audit)."""
    out: str | None = None
    """Label store folder (default: <home>/feedback)."""
    window_days: float = 30.0
    """Attribution window: outcomes later than this after a decision are not its doing."""
    max_batch: int = 20000
    """Records per poll at most."""
    poll_s: float = 0.2
    """How long one poll waits for records."""
    idle_exit_s: float | None = None
    """Stop after this many seconds without records (default: run until stopped)."""
    bandit_publish_s: float = 0.0
    """When the champion policy is a contextual bandit: learn every new label into it and,
    this often, judge it on the champion's decisions it saw before learning them (a fresh
    window each time); register and promote it through the retrain's gate only when it is
    surely better there (its 95 % interval above the champion's mean; 0: off)."""
    registry: str | None = None
    """Model registry for the bandit updates (default: the configured registry_uri)."""


class BanditUpdates:
    """The online half of continuous learning: the champion bandit learns each label and is
    published through the same gate as a retrain (see :class:`ddso.policy.bandit.OnlineBandit`)."""

    MIN_JUDGED = 30

    def __init__(self, registry: ModelRegistry, every_s: float):
        self.registry = registry
        self.every_s = every_s
        self.online: OnlineBandit | None = None
        self.last = time.monotonic()
        self._load()

    def _load(self) -> None:
        try:
            champion = self.registry.champion(POLICY_MODEL)
        except UserError:
            champion = None
        if champion is None or champion.metadata.get("kind") != BANDIT_KIND:
            self.online = None  # the rule or an RL policy serves: nothing to update online
            return
        self.online = OnlineBandit(BanditPolicy(champion).bandit,
                                   f"{champion.name}:{champion.version}")

    def take(self, labels: pd.DataFrame) -> None:
        if self.online is None or not len(labels):
            return
        if "facts" not in labels.columns:
            labels = labels.assign(facts=None)
        for row in labels[["decision_id", "features", "facts", "decision",
                           "reward"]].itertuples():
            if isinstance(row.features, str) and isinstance(row.decision, str):
                facts = json.loads(row.facts) if isinstance(row.facts, str) else None
                self.online.take(row.decision_id, context(json.loads(row.features), facts),
                                 json.loads(row.decision), float(row.reward))

    def maybe_publish(self) -> dict[str, Any] | None:
        if time.monotonic() - self.last < self.every_s:
            return None
        self.last = time.monotonic()
        online = self.online
        if online is None:
            self._load()  # a retrain may have promoted a bandit since
            return None
        if online.judged < self.MIN_JUDGED:
            log.info("bandit update kept back: %d decisions judged", online.judged)
            return None
        # Each look judges a fresh window (reset below), so no decision is looked at twice.
        result = Comparison.from_weights(*online.judged_rows())
        online.reset_judgement()
        if result.verdict() != "better":
            log.info("bandit update kept back: %s", result.to_dict())
            return None
        version = register_candidate(self.registry, POLICY_MODEL, online.bandit, {
            "parent": online.champion, "online_updates": online.updates,
            "metrics": {METRIC: result.challenger_value, **result.to_dict(),
                        "prequential": True}})
        try:
            gate(self.registry, version, result)
        except PromotionRefused as e:  # the champion changed under us: start from it again
            log.info("%s", e)
            self._load()
            return None
        online.champion = f"{POLICY_MODEL}:{version.version}"
        online.reset_judgement()
        return {"version": version.version, **result.to_dict()}


class AuditFollower:
    """The audit files not read yet (files are written whole and renamed: never partial)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.seen: set[str] = set()

    def new_decisions(self) -> pd.DataFrame:
        files = [f for f in sorted(self.directory.glob("audit-*.parquet"))
                 if f.name not in self.seen]
        self.seen.update(f.name for f in files)
        return read_decisions(files)


def _source(settings: Settings) -> Source:
    if settings.kafka.bootstrap_servers:
        return KafkaSource(settings, group_id=GROUP)
    return LocalLogSource(settings, group_id=GROUP)


def _book(args: Args) -> LabelBook:
    if not args.window_days > 0:
        raise UserError(f"--window-days must be > 0, got {args.window_days}")
    return LabelBook(window_s=args.window_days * 86_400)


def run_offline(settings: Settings, args: Args) -> dict[str, float]:
    """One pass: every audit file and every outcome in the offline store."""
    store = LabelStore(args.out or settings.home / "feedback")
    book = _book(args)
    audit = AuditFollower(Path(args.audit or settings.home / "audit"))
    table = OfflineStore(settings.offline_store_path()).read(
        columns=["event_id", "customer_id", "type", "event_time", "lines", "payload"],
        types=list(OUTCOME_LABELS))
    labels, outcomes = book.add(audit.new_decisions(),
                                outcomes_from_offline(table, settings.pii_key_bytes()))
    if len(labels) or len(outcomes):
        store.write(labels, outcomes)
    store.compact()
    return _totals(book, labels)


def run_stream(settings: Settings, args: Args) -> dict[str, float]:
    """Follow the events stream and the audit folder until stopped (or idle)."""
    stop = {"requested": False}
    with contextlib.suppress(ValueError):  # not the main thread: stop by idleness only
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    store = LabelStore(args.out or settings.home / "feedback")
    book = _book(args)
    audit = AuditFollower(Path(args.audit or settings.home / "audit"))
    known = store.read("outcomes")
    book.remember(store.read("labels"))
    labels, outcomes = book.add(audit.new_decisions(),
                                known[[c for c in known.columns
                                       if c not in ("attributed_to", "rule")]])
    if len(labels):  # decisions audited while the job was down
        store.write(labels, outcomes)
    pii_key = settings.pii_key_bytes()
    updates = (BanditUpdates(ModelRegistry(args.registry or settings.registry_path()),
                             args.bandit_publish_s) if args.bandit_publish_s > 0 else None)
    source = _source(settings)
    updated = 0
    last_records = time.monotonic()
    try:
        while not stop["requested"]:
            batch = source.poll(args.max_batch, args.poll_s)
            events = []
            for records in batch.values():
                events.extend(parse_batch(records, settings.kafka.max_event_bytes).events)
            labels, outcomes = book.add(audit.new_decisions(),
                                        outcomes_from_events(events, pii_key))
            if len(labels) or len(outcomes):
                store.write(labels, outcomes)
                updated += len(labels)
            if updates is not None:
                updates.take(labels)
                published = updates.maybe_publish()
                if published:
                    log.info("bandit update promoted: %s", published)
            if batch:
                source.commit({p: recs[-1].offset + 1 for p, recs in batch.items()})
                last_records = time.monotonic()
            elif (args.idle_exit_s is not None
                  and time.monotonic() - last_records > args.idle_exit_s):
                break
    finally:
        source.close()
    return {**_totals(book, store.read("labels", ["reward"])), "label_updates": updated}


def _totals(book: LabelBook, labels: pd.DataFrame) -> dict[str, float]:
    return {"decisions": len(book), "outcomes": len(book.outcomes),
            "labels_written": len(labels)}


def main(args: Args) -> dict[str, float]:
    settings = load_settings(args.config)
    if args.source == "offline":
        return run_offline(settings, args)
    if args.source == "stream":
        return run_stream(settings, args)
    raise UserError(f"--source must be 'stream' or 'offline', got {args.source!r}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(run(main, Args))
