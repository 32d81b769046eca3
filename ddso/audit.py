"""The decision audit log: every decision with everything needed to replay it.

One record per decision: the request context, the exact feature vector and customer facts
used, the offers catalogue as it stood, the model versions with their artifact hashes, the
scores, reason codes, eligibility outcome, the chosen action and its propensity. The customer
appears only as a keyed pseudonym (:func:`ddso.pii.pseudonymise`); the raw id is never stored.

Records are appended to Parquet in small files (``<dir>/audit-<ns>-<rand>.parquet``), one
file per flush, flushed every ``flush_records`` records or ``flush_interval_s`` seconds,
whichever comes first, and to the Kafka decisions topic when a producer is given.
Structured values are JSON strings: JSON keeps Python floats exactly (``repr`` round-trips),
which the bit-identical replay of :func:`replay` relies on.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ddso.errors import UserError
from ddso.pii import pseudonymise
from ddso.policy.arbitration import CustomerFacts, Offer
from ddso.policy.decide import (
    RULE_POLICY,
    Decision,
    PropensityScorer,
    decide,
    offer_from_dict,
    offer_to_dict,
)

SCHEMA = pa.schema(
    [
        ("decision_id", pa.string()),
        ("decided_at", pa.float64()),
        ("customer_pseudonym", pa.string()),
        ("cold_start", pa.bool_()),
        ("request", pa.string()),
        ("features", pa.string()),
        ("facts", pa.string()),
        ("offers", pa.string()),
        ("channel", pa.string()),
        ("offer_id", pa.string()),
        ("propensity", pa.float64()),
        ("explored", pa.bool_()),
        ("decision", pa.string()),
        ("experiment", pa.string()),
        ("arm", pa.string()),
    ]
)
"""Columns of an audit file; ``decision`` is :meth:`Decision.to_dict` as JSON. ``experiment``
and ``arm`` (null outside experiments) repeat the decision's ``versions`` entries; files
written before they existed read with them null."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def make_record(
    decision: Decision,
    *,
    customer_id: str,
    pii_key: bytes,
    request: Mapping[str, Any],
    features: Mapping[str, float],
    facts: CustomerFacts,
    offers_json: str,
    cold_start: bool,
    decided_at: float | None = None,
    customer_pseudonym: str | None = None,
) -> dict[str, Any]:
    """The audit record of ``decision``; ``request`` must not hold the raw customer id.

    ``customer_pseudonym``, when the caller has it already, must be
    ``pseudonymise(customer_id, pii_key, kind="customer")``.
    """
    if customer_pseudonym is None:
        customer_pseudonym = pseudonymise(customer_id, pii_key, kind="customer")
    return {
        "decision_id": decision.decision_id,
        "decided_at": time.time() if decided_at is None else decided_at,
        "customer_pseudonym": customer_pseudonym,
        "cold_start": cold_start,
        "request": _json(dict(request)),
        "features": _json({k: float(v) for k, v in features.items()}),
        "facts": _json(
            {
                "consent": dict(facts.consent),
                "preferred_channel": facts.preferred_channel,
                "age": facts.age,
            }
        ),
        "offers": offers_json,
        "channel": decision.channel,
        "offer_id": decision.offer_id,
        "propensity": decision.propensity,
        "explored": decision.explored,
        "decision": _json(decision.to_dict()),
        "experiment": decision.versions.get("experiment"),
        "arm": decision.versions.get("arm"),
    }


def offers_json(offers: Sequence[Offer]) -> str:
    """The catalogue as stored in records (computed once per server, not per decision)."""
    return _json([offer_to_dict(o) for o in offers])


class RecordSink(Protocol):
    def send_raw(self, key: bytes | None, value: bytes) -> None: ...


class AuditLog:
    """Buffers records and writes them as small Parquet files (and to Kafka, if given).

    Thread-safe. A background thread flushes a buffer older than ``flush_interval_s`` even
    when no more decisions come; :meth:`close` flushes what is left.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        flush_records: int = 500,
        flush_interval_s: float = 1.0,
        sink: RecordSink | None = None,
    ):
        if flush_records < 1 or not flush_interval_s > 0:
            raise ValueError(
                f"need flush_records >= 1 and flush_interval_s > 0, got {flush_records}, "
                f"{flush_interval_s}"
            )
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.flush_records = flush_records
        self.flush_interval_s = flush_interval_s
        self.sink = sink
        self._buffer: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ddso-audit-flush", daemon=True)
        self._thread.start()

    def write(self, record: Mapping[str, Any]) -> None:
        if self.sink is not None:
            self.sink.send_raw(record["decision_id"].encode(), _json(dict(record)).encode())
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(dict(record))
            full = len(self._buffer) >= self.flush_records
        if full:
            self.flush()

    def flush(self) -> Path | None:
        """Write the buffered records as one file; its path, or None if there were none."""
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return None
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        name = f"audit-{time.time_ns()}-{secrets.token_hex(4)}.parquet"
        tmp = self.directory / f".{name}.tmp"
        pq.write_table(table, tmp)
        path = self.directory / name
        tmp.replace(path)  # readers never see a half-written file
        return path

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s / 4):
            with self._lock:
                stale = bool(self._buffer) and (
                    time.monotonic() - self._oldest >= self.flush_interval_s
                )
            if stale:
                self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


def find_record(directory: str | Path, decision_id: str) -> dict[str, Any]:
    """The audit record of ``decision_id`` under ``directory``; UserError if there is none."""
    directory = Path(directory)
    files = sorted(directory.glob("audit-*.parquet"))
    if not files:
        raise UserError(f"{directory}: no audit files here; pass --audit DIR of a server")
    table = ds.dataset([str(f) for f in files], schema=SCHEMA, format="parquet").to_table(
        filter=ds.field("decision_id") == decision_id
    )
    if table.num_rows == 0:
        raise UserError(f"no decision {decision_id!r} in the audit log at {directory}")
    return table.slice(0, 1).to_pylist()[0]


def replay(record: Mapping[str, Any], registry: Any) -> list[str]:
    """Re-run a recorded decision with the recorded model version; the differences found.

    An empty list means the replay is bit-identical. ``registry`` is a
    :class:`ddso.models.registry.ModelRegistry`.
    """
    recorded = json.loads(record["decision"])
    features = json.loads(record["features"])
    f = json.loads(record["facts"])
    facts = CustomerFacts(
        consent=f["consent"], preferred_channel=f["preferred_channel"], age=f["age"]
    )
    offers = [offer_from_dict(o) for o in json.loads(record["offers"])]
    versions = recorded["versions"]
    name, _, version = versions["propensity"].partition(":")
    model = registry.get(name, version)
    problems = []
    if model.artifact_sha256 != versions.get("propensity_sha256"):
        problems.append(
            f"model {versions['propensity']} artifact sha256 is {model.artifact_sha256}, "
            f"the decision used {versions.get('propensity_sha256')}"
        )
    scores = PropensityScorer(model).score(features)
    rank = None
    if versions.get("policy", RULE_POLICY) != RULE_POLICY:
        from rl_env.serving import policy_for  # the RL package only when one was used

        pname, _, pversion = versions["policy"].partition(":")
        policy_version = registry.get(pname, pversion)
        if policy_version.artifact_sha256 != versions.get("policy_sha256"):
            problems.append(
                f"policy {versions['policy']} artifact sha256 is "
                f"{policy_version.artifact_sha256}, the decision used "
                f"{versions.get('policy_sha256')}"
            )
        rank = policy_for(policy_version).ranker(
            features, facts, scores["band"], record["decided_at"]
        )

    again = decide(
        recorded["decision_id"],
        features,
        facts,
        scores,
        offers,
        epsilon=recorded["epsilon"],
        versions=versions,
        policy=rank,
    ).to_dict()
    fresh = json.loads(_json(again))
    for key in sorted(set(recorded) | set(fresh)):
        if recorded.get(key) != fresh.get(key):
            problems.append(f"{key}: recorded {recorded.get(key)!r}, replayed {fresh.get(key)!r}")
    return problems
