"""``ddso data describe`` counts what is in the files and names a bad file."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from ddso.cli import main
from ddso.data.describe import describe, format_description
from ddso.data.generator import GeneratorConfig, generate
from ddso.errors import DataFileError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("desc") / "ds"
    generate(GeneratorConfig(customers=2000, days=90, seed=5, chunk_size=800), out, False)
    return out


def test_numbers_equal_counts_from_the_files(dataset):
    report = describe(dataset)
    ev = pq.read_table(dataset / "events").to_pandas()
    assert report["events"] == len(ev)
    assert report["events_by_type"] == ev.type.value_counts().to_dict()
    customers = pq.read_table(dataset / "warehouse" / "customers").num_rows
    assert report["customers"] == report["funnel"]["leads"] == customers == 2000
    assert report["tables"]["sales"] == pq.read_table(dataset / "warehouse" / "sales").num_rows
    f = report["funnel"]
    for stage, type_ in (("contacted", "offer_shown"), ("enrolled", "enrollment"),
                         ("graduated", "graduation"), ("churned", "churn")):
        assert f[stage] == ev.loc[ev.type == type_, "customer_id"].nunique()
    qualified = ev[(ev.type == "offer_accepted")
                   | (ev.type.str.startswith("crm_") & (ev.outcome == "positive"))]
    assert f["qualified"] == qualified.customer_id.nunique()
    assert f["conversion_rate"] == f["enrolled"] / 2000
    assert report["targets"] == {"conversion_rate": 0.009, "graduation_rate": 0.0069}
    assert report["event_time_range"]["first"] == ev.event_time.min().isoformat()
    text = format_description(report)
    assert "conversion_rate" in text and "seed target 0.90%" in text


def test_missing_dir_is_a_data_file_error_naming_the_path(capsys):
    with pytest.raises(DataFileError, match="/nonexistent"):
        describe(__import__("pathlib").Path("/nonexistent"))
    assert main(["data", "describe", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent" in err and len(err.strip().splitlines()) == 1


def test_corrupt_part_file_is_named(dataset, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    bad = copy / "events" / "part-00001.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataFileError, match="part-00001.parquet"):
        describe(copy)
