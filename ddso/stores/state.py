"""What the stream applies to the online store, and the rules it applies it by.

A micro-batch becomes a list of :class:`Update`: one per accepted event, carrying the
event's daily partial (nonzero sums, timestamps) and its last-value fields (funnel stage,
last CRM outcome). Every online store applies updates with the same rules, checked by one
conformance suite (``tests/ddso/stores/test_online_conformance.py``):

- **Dedupe**: an event id already applied for the customer is skipped (redelivery and
  replays change nothing).
- **Lateness**: an event older than the customer's watermark (newest event time applied)
  minus the lateness bound is not applied; it is counted and returned for routing to the
  late-event sink. Ids are remembered for exactly that long, which bounds memory.
- **Sums** (counts, amounts) are commutative: an accepted event in any order adds the same.
- **Last-value fields** are written only by an event newer than the one that wrote them,
  ordered by (event time, event id): a late event never overwrites newer state, the
  same-second case included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from ddso.features import behaviour
from ddso.schemas.base import FunnelStage
from ddso.schemas.events import EventBase, Purchase
from ddso.stores.offline import LINE_TYPE

# Event type -> the funnel stage it moves a customer to.
STAGE_OF_EVENT: dict[str, FunnelStage] = {
    "offer_shown": FunnelStage.CONTACTED,
    "crm_call": FunnelStage.CONTACTED,
    "crm_email": FunnelStage.CONTACTED,
    "crm_meeting": FunnelStage.CONTACTED,
    "offer_accepted": FunnelStage.QUALIFIED,
    "enrollment": FunnelStage.ENROLLED,
    "program_payment": FunnelStage.ACTIVE,
    "graduation": FunnelStage.GRADUATED,
    "dropout": FunnelStage.DROPPED,
    "churn": FunnelStage.CHURNED,
}


@dataclass(frozen=True)
class Update:
    """One accepted event's effect on its customer's online state."""

    customer_id: str
    event_id: str
    time_s: float
    day: int
    sums: dict[str, float]
    """Nonzero partial sums of the event's day (see ``behaviour.SUM_METRICS``)."""
    last_values: dict[str, str] = field(default_factory=dict)
    """Last-value fields this event writes (``stage``, ``last_crm_outcome``)."""


@dataclass
class ApplyResult:
    applied: int = 0
    duplicates: int = 0
    late: list[str] = field(default_factory=list)
    """Ids of events beyond the lateness bound: not applied, to be routed."""


def updates_from_events(events: Iterable[EventBase]) -> list[Update]:
    """Turn validated events into updates, through the shared feature contributions."""
    events = list(events)
    if not events:
        return []
    table = pa.table(
        {
            "customer_id": [e.customer_id for e in events],
            "type": [e.type for e in events],  # type: ignore[attr-defined]
            "event_time": pa.array([e.event_time for e in events], pa.timestamp("us", tz="UTC")),
            "lines": pa.array(
                [
                    [ln.model_dump() for ln in e.lines] if isinstance(e, Purchase) else None
                    for e in events
                ],
                pa.list_(LINE_TYPE),
            ),
        }
    )
    parts = behaviour.contributions(table)
    sums = parts[list(behaviour.SUM_METRICS)].to_numpy()
    times = parts["last_event_s"].to_numpy().tolist()
    days = parts["day"].to_numpy().tolist()
    rows, cols = np.nonzero(sums)
    nonzero: list[dict[str, float]] = [{} for _ in events]
    for i, j, v in zip(rows.tolist(), cols.tolist(), sums[rows, cols].tolist(), strict=True):
        nonzero[i][behaviour.SUM_METRICS[j]] = v
    out = []
    for i, e in enumerate(events):
        last: dict[str, str] = {}
        stage = STAGE_OF_EVENT.get(e.type)  # type: ignore[attr-defined]
        if stage is not None:
            last["stage"] = stage.value
        outcome = getattr(e, "outcome", None)
        if outcome is not None:
            last["last_crm_outcome"] = outcome
        out.append(Update(e.customer_id, e.event_id, times[i], days[i], nonzero[i], last))
    return out


@dataclass
class CustomerState:
    """A customer's online state, as every store returns it."""

    daily: dict[int, dict[str, float]]
    """day -> nonzero partial sums of that day."""
    last_event_s: float = 0.0
    last_purchase_s: float = 0.0
    last_contact_s: float = 0.0
    first_event_s: float = 0.0
    last_values: dict[str, str] = field(default_factory=dict)

    def daily_partials(self, customer_id: str) -> pd.DataFrame:
        """The state as partial rows (``behaviour.PARTIAL_COLUMNS``), one per stored day.

        Timestamps are customer-wide, so every row carries them; max/min over the rows the
        window keeps give them back unchanged.
        """
        days = sorted(self.daily) or [int(self.last_event_s // behaviour.DAY_S)]
        rows = [
            {
                "customer_id": customer_id,
                "day": d,
                **{m: self.daily.get(d, {}).get(m, 0.0) for m in behaviour.SUM_METRICS},
                "last_event_s": self.last_event_s,
                "last_purchase_s": self.last_purchase_s,
                "last_contact_s": self.last_contact_s,
                "first_event_s": self.first_event_s,
            }
            for d in days
        ]
        return pd.DataFrame(rows, columns=list(behaviour.PARTIAL_COLUMNS))

    def features(self, customer_id: str, as_of: datetime) -> dict[str, float | str]:
        """Behavioural features as of ``as_of`` (not before the newest applied event)."""
        row = behaviour.features_from_daily(self.daily_partials(customer_id), as_of).iloc[0]
        out: dict[str, float | str] = {c: float(row[c]) for c in behaviour.FEATURE_COLUMNS}
        out["funnel_stage"] = self.last_values.get("stage", "lead")
        out["last_crm_outcome"] = self.last_values.get("last_crm_outcome", "none")
        return out


def timestamps_of(update: Update) -> Mapping[str, float]:
    """The max/min timestamp fields one update moves."""
    stamps = {"last_event_s": update.time_s, "first_event_s": update.time_s}
    if update.sums.get("purchases"):
        stamps["last_purchase_s"] = update.time_s
    if update.sums.get("contacts"):
        stamps["last_contact_s"] = update.time_s
    return stamps
