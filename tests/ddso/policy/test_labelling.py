"""Incremental attribution equals the batch one, whatever the arrival order; the label store."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from ddso.policy.attribution import attribute
from ddso.policy.labelling import (
    LabelBook,
    LabelStore,
    outcomes_from_events,
    outcomes_from_offline,
)
from ddso.schemas.events import parse_event_obj
from ddso.stores.offline import events_table

pytestmark = pytest.mark.unit

DAY = 24 * 3600.0
TYPES = ["offer_accepted", "enrollment", "graduation", "churn", "purchase"]
COMPARED = ["accepted", "enrolled", "graduated", "churned", "purchased", "revenue", "outcomes",
            "reward"]


def world(seed: int, customers: int = 40, decisions: int = 200, outcomes: int = 300):
    rng = np.random.default_rng(seed)
    dec = pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(decisions)],
        "decided_at": rng.uniform(0, 60 * DAY, decisions),
        "customer_pseudonym": [f"c{k}" for k in rng.integers(0, customers, decisions)],
        "channel": rng.choice(np.array(["email", "sms", None], dtype=object), decisions),
        "offer_id": rng.choice(np.array(["P1", "P2", None], dtype=object), decisions),
        "propensity": rng.uniform(0.05, 1.0, decisions),
    })
    customer = np.array([f"c{k}" for k in rng.integers(0, customers, outcomes)], dtype=object)
    # a third name a decision: mostly one of the customer's own, some another customer's
    names = rng.integers(0, decisions, outcomes)
    own = rng.random(outcomes) < 0.8
    customer[own] = dec["customer_pseudonym"].to_numpy()[names[own]]
    named = rng.random(outcomes) < 0.3
    out = pd.DataFrame({
        # repeats on purpose: the same event delivered twice must count once
        "event_id": [f"e{k}" for k in rng.integers(0, int(outcomes * 0.8), outcomes)],
        "type": rng.choice(TYPES, outcomes),
        "customer_pseudonym": customer,
        "event_time": rng.uniform(0, 80 * DAY, outcomes),
        "decision_id": np.where(named, [f"d{k}" for k in names], None),
        "value": rng.uniform(1, 100, outcomes),
    })
    # one event id always carries the same content, as a redelivery would
    out = out.drop_duplicates("event_id").sample(frac=1.3, replace=True, random_state=seed)
    return dec, out.reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_book_equals_one_batch_attribution_for_any_arrival_order(seed):
    dec, out = world(seed)
    batch = attribute(dec, out).labels.set_index("decision_id").sort_index()
    rng = np.random.default_rng(seed + 100)
    book = LabelBook()
    latest: dict[str, pd.Series] = {}
    # decisions and outcomes interleaved in random chunks, outcomes often before their decision
    d_order, o_order = rng.permutation(len(dec)), rng.permutation(len(out))
    d_cuts = np.sort(rng.choice(len(dec), 9, replace=False))
    o_cuts = np.sort(rng.choice(len(out), 9, replace=False))
    for d_part, o_part in zip(np.split(d_order, d_cuts), np.split(o_order, o_cuts), strict=True):
        labels, _ = book.add(dec.iloc[d_part], out.iloc[o_part])
        for row in labels.to_dict("records"):
            latest[row["decision_id"]] = pd.Series(row)
    # replaying everything changes nothing
    again, _ = book.add(dec, out)
    assert len(again) == 0
    got = pd.DataFrame(latest.values()).set_index("decision_id").sort_index()
    assert list(got.index) == list(batch.index)
    pd.testing.assert_frame_equal(got[COMPARED].astype(float), batch[COMPARED].astype(float))


def test_the_store_keeps_the_newest_label_of_each_decision(tmp_path):
    dec, out = world(3, decisions=20, outcomes=30)
    book, store = LabelBook(), LabelStore(tmp_path)
    first = out.iloc[:10]
    store.write(*book.add(dec, first))
    store.write(*book.add(None, out.iloc[10:]))
    expected = attribute(dec, out).labels.set_index("decision_id").sort_index()
    got = store.read().set_index("decision_id").sort_index()
    pd.testing.assert_frame_equal(got[COMPARED].astype(float), expected[COMPARED].astype(float))
    assert got["labelled_at"].notna().all()
    store.compact()
    assert len(list((tmp_path / "labels").glob("part-*.parquet"))) == 1
    compacted = store.read().set_index("decision_id").sort_index()
    pd.testing.assert_frame_equal(compacted[COMPARED], got[COMPARED])
    assert set(store.read("outcomes")["event_id"]) == set(out["event_id"])


def test_outcome_rows_from_events_and_from_the_offline_store_agree():
    when = datetime(2025, 3, 1, 12, tzinfo=UTC)
    events = [parse_event_obj(e) for e in [
        {"type": "enrollment", "event_id": "e1", "customer_id": "C1", "event_time": when,
         "source": "api", "enrollment_id": "n1", "product_id": "P1", "monthly_payment": 50.0,
         "decision_id": "d9"},
        {"type": "purchase", "event_id": "e2", "customer_id": "C2", "event_time": when,
         "source": "web", "sale_id": "s1", "channel": "web",
         "lines": [{"product_id": "P3", "quantity": 2, "unit_price": 10.0, "discount": 0.25}]},
        {"type": "churn", "event_id": "e3", "customer_id": "C1", "event_time": when,
         "source": "crm", "reason": "inactive"},
        {"type": "session_start", "event_id": "e4", "customer_id": "C1", "event_time": when,
         "source": "web", "session_id": "x", "device": "mobile", "traffic_source": "direct"},
    ]]
    key = b"k" * 32
    direct = outcomes_from_events(events, key)
    stored = outcomes_from_offline(events_table(events, range(len(events)), "t-0", when), key)
    pd.testing.assert_frame_equal(direct.reset_index(drop=True), stored.reset_index(drop=True),
                                  check_dtype=False)
    assert list(direct["event_id"]) == ["e1", "e2", "e3"]  # the session is no outcome
    assert direct.loc[0, "decision_id"] == "d9" and direct.loc[1, "value"] == 15.0
    assert "C1" not in set(direct["customer_pseudonym"])  # pseudonyms only
