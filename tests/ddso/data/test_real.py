"""The real-data loaders, on the shared files themselves and on corrupt copies of them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ddso.data import real
from ddso.errors import DataFileError, UserError

pytestmark = pytest.mark.unit


def _copy(tmp_path: Path, name: str, edit, keep: int | None = None) -> Path:
    """Write the first ``keep`` lines of a shared file, passed through ``edit``, to tmp_path."""
    lines = (real.DATA_DIR / name).read_text().splitlines()[:keep]
    target = tmp_path / Path(name).name
    target.write_text("\n".join(edit(lines)) + "\n")
    return target


def _replace_field(line: str, index: int, value: str, sep: str = ",") -> str:
    fields = line.split(sep)
    fields[index] = value
    return sep.join(fields)


# --- German Credit ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    return real.load_german_credit()


def test_german_credit_rows_and_class_balance(german):
    assert len(german) == 1000
    assert german["bad"].value_counts().to_dict() == {0: 700, 1: 300}


def test_german_credit_columns_and_dtypes(german):
    expected = [*real.GERMAN_CREDIT_NUMERIC, *real.GERMAN_CREDIT_CATEGORICAL, "bad"]
    assert sorted(german.columns) == sorted(expected)
    assert len(real.GERMAN_CREDIT_NUMERIC) + len(real.GERMAN_CREDIT_CATEGORICAL) == 20
    for column in real.GERMAN_CREDIT_NUMERIC:
        assert german[column].dtype == "int64", column
    for column, labels in real.GERMAN_CREDIT_CATEGORIES.items():
        assert isinstance(german[column].dtype, pd.CategoricalDtype), column
        assert list(german[column].cat.categories) == list(labels)
        assert german[column].notna().all(), column
    assert german["bad"].dtype == "int64"


def test_german_credit_first_row_is_read_as_written(german):
    row = german.iloc[0]
    assert row["checking_account"] == "... < 0 DM"
    assert (row["duration_months"], row["credit_amount"], row["age_years"]) == (6, 1169, 67)
    assert row["purpose"] == "radio/television"
    assert row["bad"] == 0
    assert german.iloc[1]["bad"] == 1


def test_german_credit_bad_number_names_file_line_and_column(tmp_path):
    path = _copy(tmp_path, "german_credit.csv",
                 lambda ls: [*ls[:4], _replace_field(ls[4], 1, "six"), *ls[5:]], keep=10)
    with pytest.raises(DataFileError, match=r"german_credit\.csv:5: column 'duration_in_month' "
                       r"has 'six', which is not an integer >= 0"):
        real.load_german_credit(path)


def test_german_credit_unknown_label_and_target(tmp_path):
    path = _copy(tmp_path, "german_credit.csv",
                 lambda ls: [*ls[:3], ls[3].replace("education", "eduction"), *ls[4:]], keep=10)
    with pytest.raises(DataFileError, match=r":4: column 'purpose' has 'eduction'"):
        real.load_german_credit(path)
    path = _copy(tmp_path, "german_credit.csv",
                 lambda ls: [*ls[:2], ls[2].removesuffix("bad") + "maybe", *ls[3:]], keep=10)
    with pytest.raises(DataFileError, match=r":3: column 'creditability' has 'maybe'"):
        real.load_german_credit(path)


def test_german_credit_missing_column_and_extra_field(tmp_path):
    path = _copy(tmp_path, "german_credit.csv",
                 lambda ls: [ls[0].replace("purpose", "porpose"), *ls[1:]], keep=10)
    with pytest.raises(DataFileError, match="missing column 'purpose'"):
        real.load_german_credit(path)
    path = _copy(tmp_path, "german_credit.csv",
                 lambda ls: [*ls[:6], ls[6] + ",extra", *ls[7:]], keep=10)
    with pytest.raises(DataFileError, match=r"german_credit\.csv.*line 7"):
        real.load_german_credit(path)


def test_missing_file_names_it_and_what_to_do(tmp_path):
    with pytest.raises(DataFileError, match=r"nope\.csv: data file not found.*pass path="):
        real.load_german_credit(tmp_path / "nope.csv")


# --- CDNOW --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return real.load_cdnow()


@pytest.fixture(scope="module")
def summary(cdnow) -> pd.DataFrame:
    return real.cdnow_calibration_holdout(cdnow)


def test_cdnow_counts_and_dtypes(cdnow):
    assert len(cdnow) == 69_659
    assert cdnow["customer_id"].nunique() == 23_570
    assert cdnow.dtypes.to_dict() == {"customer_id": "int64", "date": "datetime64[ns]",
                                      "cds": "int64", "amount": "float64"}
    assert cdnow["date"].min() == pd.Timestamp("1997-01-01")
    assert cdnow["date"].max() == pd.Timestamp("1998-06-30")
    assert cdnow.iloc[0].tolist() == [1, pd.Timestamp("1997-01-01"), 1, 11.77]


def test_cdnow_split_is_self_consistent(cdnow, summary):
    assert len(summary) == 23_570  # every customer's first purchase is in Q1 1997
    repeat_days = len(cdnow.drop_duplicates(["customer_id", "date"])) - 23_570
    # The data span exactly weeks 1-78, so every repeat day is in one of the two periods.
    assert summary["frequency_cal"].sum() + summary["frequency_holdout"].sum() == repeat_days
    # Computed by this loader (regression values, not published figures).
    assert (summary["frequency_cal"].sum(), summary["frequency_holdout"].sum()) == (24_337, 19_684)
    assert (summary["recency_cal"] <= summary["T_cal"]).all()
    assert summary["T_cal"].between(189 / 7, 272 / 7).all()  # first buys Jan 1 - Mar 25
    assert (summary["duration_holdout"] == 39.0).all()
    assert (summary.loc[summary["frequency_cal"] == 0, ["recency_cal", "monetary_value_cal"]]
            == 0).all().all()


def test_cdnow_calibration_convention_on_a_hand_made_history():
    rows = [  # customer 7: two records on day 1, repeats on days 15 and 15, one after the end
        (7, "1997-01-01", 10.0), (7, "1997-01-01", 5.0), (7, "1997-01-15", 20.0),
        (7, "1997-01-15", 4.0), (7, "1997-01-29", 6.0), (7, "1997-03-10", 99.0),
        (8, "1997-01-08", 1.0), (9, "1997-03-20", 3.0),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    df["date"] = pd.to_datetime(df["date"])
    out = real.cdnow_calibration_holdout(df, calibration_weeks=8, holdout_weeks=2)
    assert list(out.index) == [7, 8]  # customer 9 first buys after the calibration
    seven = out.loc[7]
    assert seven["frequency_cal"] == 2
    assert seven["recency_cal"] == 4.0
    assert seven["T_cal"] == pytest.approx(55 / 7)
    assert seven["monetary_value_cal"] == pytest.approx(15.0)
    assert seven["frequency_holdout"] == 1
    assert out.loc[8, "T_cal"] == pytest.approx(48 / 7)


def test_cdnow_first_day_customer_matches_the_published_age(summary):
    assert summary.loc[1, "T_cal"] == pytest.approx(38.86, abs=0.005)


def test_cdnow_wrong_field_count_and_bad_date_name_the_line(tmp_path):
    path = _copy(tmp_path, "cdnow_master.txt",
                 lambda ls: [*ls[:3], ls[3] + " 7", *ls[4:]], keep=10)
    with pytest.raises(DataFileError, match=r"cdnow_master\.txt:4: 5 fields, expected 4"):
        real.load_cdnow(path)
    path = _copy(tmp_path, "cdnow_master.txt",
                 lambda ls: [*ls[:5], ls[5].replace("1997", "1997-", 1), *ls[6:]], keep=10)
    with pytest.raises(DataFileError, match=r":6: column 'date' has '1997-"):
        real.load_cdnow(path)
    path = _copy(tmp_path, "cdnow_master.txt", lambda ls: [ls[0].replace("date", "day"), *ls[1:]])
    with pytest.raises(DataFileError, match=r":1: header is"):
        real.load_cdnow(path)


def test_cdnow_split_rejects_bad_arguments(cdnow):
    with pytest.raises(UserError, match="calibration_weeks=0"):
        real.cdnow_calibration_holdout(cdnow, calibration_weeks=0)
    with pytest.raises(UserError, match="column 'amount' is missing"):
        real.cdnow_calibration_holdout(cdnow.drop(columns="amount"))


# --- Open Bandit Dataset ------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "clicks"), [("random", 38), ("bts", 42)])
def test_obd_logs(policy, clicks):
    log = real.load_obd(policy)
    assert len(log) == 10_000
    assert log["click"].sum() == clicks
    assert log["item_id"].nunique() == 80
    assert set(log["position"]) == {1, 2, 3}
    assert str(log["timestamp"].dtype) == "datetime64[ns, UTC]"
    affinity = [c for c in log.columns if c.startswith(real.OBD_AFFINITY_PREFIX)]
    assert affinity == [f"user_item_affinity_{i}" for i in range(80)]
    assert list(log.columns[:9]) == ["timestamp", "item_id", "position", "click",
                                     "propensity_score", *real.OBD_USER_FEATURES]
    assert all(isinstance(log[c].dtype, pd.CategoricalDtype) for c in real.OBD_USER_FEATURES)
    assert log["propensity_score"].between(0, 1, inclusive="right").all()
    if policy == "random":  # uniform over 80 items
        assert (log["propensity_score"] == 1 / 80).all()


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_obd_item_context(policy):
    items = real.load_obd_item_context(policy)
    assert len(items) == 80
    assert list(items["item_id"]) == list(range(80))
    assert items["item_feature_0"].dtype == "float64"
    assert isinstance(items["item_feature_1"].dtype, pd.CategoricalDtype)


@pytest.mark.parametrize(("campaign", "items"), [("all", 80), ("men", 34), ("women", 46)])
def test_bts_prior(campaign, items):
    prior = real.load_bts_prior(campaign)
    assert list(prior.columns) == ["item_id", "alpha", "beta"]
    assert len(prior) == items
    assert (prior[["alpha", "beta"]] > 0).all().all()
    if campaign == "all":
        assert prior.loc[0, "alpha"] == 47.0


def test_obd_bad_values_and_arguments(tmp_path):
    path = _copy(tmp_path, "obd/random_all.csv",
                 lambda ls: [*ls[:2], _replace_field(ls[2], 4, "2"), *ls[3:]], keep=20)
    with pytest.raises(DataFileError, match=r"random_all\.csv:3: column 'click' has '2', which is "
                       r"not an integer in \[0, 1\]"):
        real.load_obd("random", path)
    path = _copy(tmp_path, "obd/random_all.csv",
                 lambda ls: [ls[0].replace(",position", ",slot"), *ls[1:]], keep=20)
    with pytest.raises(DataFileError, match="missing column 'position'"):
        real.load_obd("random", path)
    with pytest.raises(UserError, match="policy 'greedy'"):
        real.load_obd("greedy")  # type: ignore[arg-type]


def test_bts_prior_errors(tmp_path):
    with pytest.raises(UserError, match=r"campaign 'kids'.*\['all', 'men', 'women'\]"):
        real.load_bts_prior("kids")
    path = _copy(tmp_path, "obd/prior_bts.yaml", lambda ls: [*ls[:5], "  - [oops", *ls[5:]])
    with pytest.raises(DataFileError, match=r"prior_bts\.yaml:\d+: not valid YAML"):
        real.load_bts_prior("all", path)
