"""The synthetic generator: determinism, schema conformance, consistency and calibration."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ddso.cli import main
from ddso.data.dataset import Dataset, event_rows_to_json
from ddso.data.event_table import EVENT_SCHEMA
from ddso.data.generator import GeneratorConfig, generate
from ddso.data.tables import WAREHOUSE_SCHEMAS, unflatten_row
from ddso.schemas.events import EVENT_MODELS, parse_event
from ddso.schemas.warehouse import WAREHOUSE_TABLES

pytestmark = pytest.mark.unit


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.parquet")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Dataset:
    out = tmp_path_factory.mktemp("gen") / "ds"
    generate(GeneratorConfig(customers=1200, days=120, seed=3, chunk_size=500), out, False)
    return Dataset(out)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small):
    cfg = GeneratorConfig(customers=1200, days=120, seed=3, chunk_size=500)
    generate(cfg, tmp_path / "again", progress=False)
    assert _digest(tmp_path / "again") == _digest(small.path)
    generate(cfg.model_copy(update={"seed": 4}), tmp_path / "other", progress=False)
    assert _digest(tmp_path / "other") != _digest(small.path)


def test_layout_and_schemas(small):
    assert small.manifest["chunks"] == 3
    for name, schema in WAREHOUSE_SCHEMAS.items():
        for f in (small.path / "warehouse" / name).glob("part-*.parquet"):
            assert pa.parquet.read_schema(f).remove_metadata() == schema, f
    ev = pa.parquet.read_table(small.path / "events")
    assert ev.schema.remove_metadata() == EVENT_SCHEMA
    assert set(ev["type"].to_pylist()) == set(EVENT_MODELS)
    assert small.manifest["events"] == ev.num_rows


def test_every_event_row_parses_and_round_trips(small):
    for batch in small.iter_event_batches(batch_rows=20_000):
        encoded = event_rows_to_json(batch)
        assert len(encoded) == batch.num_rows
        for data, row in zip(encoded, batch.to_pylist(), strict=True):
            event = parse_event(data)
            assert event.event_id == row["event_id"]
            assert event.event_time == row["event_time"]


def test_warehouse_rows_validate_against_models(small):
    for name, model in WAREHOUSE_TABLES.items():
        rows = pa.parquet.read_table(small.path / "warehouse" / name).to_pylist()
        assert rows, name
        for row in rows[:: max(1, len(rows) // 300)]:
            model.model_validate(unflatten_row(model, row))


def test_events_ordered_per_customer(small):
    for f in sorted((small.path / "events").glob("part-*.parquet")):
        ev = pa.parquet.read_table(f, columns=["customer_id", "event_time"]).to_pandas()
        assert ev["customer_id"].is_monotonic_increasing
        assert (ev.groupby("customer_id")["event_time"].diff().dropna().dt.total_seconds()
                >= 0).all()


def test_events_and_tables_are_consistent(small):
    ev = pa.parquet.read_table(small.path / "events").to_pandas()
    sales = small.table("sales")
    purchases = ev[ev.type == "purchase"]
    assert set(purchases.sale_id) == set(sales.sale_id)
    assert set(ev.loc[ev.type == "session_start", "session_id"]) == set(
        small.table("web_sessions").session_id)
    details = small.table("sales_details").groupby("sale_id").size()
    assert (purchases.set_index("sale_id")["lines"].map(len) == details[purchases.sale_id]).all()
    crm = small.table("crm_interactions")
    assert set(ev.loc[ev.type.str.startswith("crm_"), "interaction_id"]) <= set(crm.interaction_id)
    first = {t: ev[ev.type == t].groupby("customer_id").event_time.min()
             for t in ("offer_accepted", "enrollment", "graduation", "dropout")}
    enrolled = first["enrollment"]
    assert len(enrolled) > 0
    accepted = first["offer_accepted"].reindex(enrolled.index)
    assert (accepted < enrolled).all()
    for end in ("graduation", "dropout"):
        assert (first[end] > enrolled.reindex(first[end].index)).all()
    customers = small.table("customers")
    assert customers.email_pseudonym.dropna().str.fullmatch("[0-9a-f]{64}").all()
    assert not any("@" in str(v) for v in customers.astype(str).to_numpy().ravel())


def _binomial_ci(k: int, n: int, z: float = 3.0) -> tuple[float, float]:
    p = k / n
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def test_funnel_rates_match_the_seed_targets(tmp_path):
    out = tmp_path / "cohort"
    summary = generate(GeneratorConfig(customers=30_000, days=365, seed=11), out, False)
    ev = pa.parquet.read_table(out / "events", columns=["type", "customer_id"])
    n = summary["customers"]
    for type_, target in (("enrollment", 0.009), ("graduation", 0.0069)):
        k = len(pc.unique(ev.filter(pc.equal(ev["type"], type_))["customer_id"]))
        lo, hi = _binomial_ci(k, n)
        assert lo <= target <= hi, (type_, k / n, target)
    truth = Dataset(out).truth()
    assert np.isclose(truth.enroll_probability.mean(), 0.009, rtol=0.25)


def test_cli_rejects_zero_customers(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["data", "generate", "--customers", "0", "--days", "5", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_refuses_to_clobber_a_foreign_directory(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    code = main(["data", "generate", "--customers", "5", "--days", "5", "--out", str(tmp_path),
                 "--quiet"])
    assert code == 2
    assert str(tmp_path) in capsys.readouterr().err
    assert (tmp_path / "keep.txt").exists()
