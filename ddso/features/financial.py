"""Financial-health features from the FinancialProfile table, as one pure batch function.

Works on the flattened warehouse table (``income_streams`` and ``debts`` as Parquet
list<struct> columns) and on one profile online (see :func:`profile_to_frame`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ddso.schemas.warehouse import FinancialProfile

FEATURE_COLUMNS: tuple[str, ...] = (
    "monthly_income",
    "income_streams",
    "income_stability",
    "debt_to_income",
    "credit_utilisation",
    "total_debt",
    "on_time_ratio_12m",
    "late_payments_12m",
    "delinquencies_24m",
    "savings_ratio",
)
"""The financial features, in model order."""


def _list_sum(col: pa.ChunkedArray | pa.Array, field: str, n: int, weights: str | None = None):
    """Per-row sum of ``field`` over a list<struct> column (optionally weighted)."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    out = np.zeros(n)
    flat = pc.list_flatten(col)
    if len(flat) == 0:
        return out
    parents = pc.list_parent_indices(col).to_numpy()
    values = np.nan_to_num(flat.field(field).to_numpy(zero_copy_only=False).astype(float))
    if weights is not None:
        values = values * np.nan_to_num(
            flat.field(weights).to_numpy(zero_copy_only=False).astype(float)
        )
    np.add.at(out, parents, values)
    return out


def financial_features(profiles: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """FinancialProfile rows -> one feature row per customer (columns: FEATURE_COLUMNS)."""
    t = (
        profiles
        if isinstance(profiles, pa.Table)
        else pa.Table.from_pandas(profiles, preserve_index=False)
    )
    n = t.num_rows
    income = _list_sum(t["income_streams"], "monthly_amount", n)
    stability_w = _list_sum(t["income_streams"], "stability", n, weights="monthly_amount")
    debt_payment = _list_sum(t["debts"], "monthly_payment", n)
    balance = _list_sum(t["debts"], "balance", n)
    # Utilisation is over revolving debt only: a null credit_limit marks an instalment loan.
    debts = t["debts"].combine_chunks() if isinstance(t["debts"], pa.ChunkedArray) else t["debts"]
    flat = pc.list_flatten(debts)
    limit = np.zeros(n)
    revolving_balance = np.zeros(n)
    if len(flat):
        parents = pc.list_parent_indices(debts).to_numpy()
        lim = flat.field("credit_limit").to_numpy(zero_copy_only=False).astype(float)
        bal = flat.field("balance").to_numpy(zero_copy_only=False).astype(float)
        revolving = ~np.isnan(lim)
        np.add.at(limit, parents[revolving], lim[revolving])
        np.add.at(revolving_balance, parents[revolving], bal[revolving])
    due = t["payments_due_12m"].to_numpy(zero_copy_only=False).astype(float)
    on_time = t["payments_on_time_12m"].to_numpy(zero_copy_only=False).astype(float)
    savings = t["savings_balance"].to_numpy(zero_copy_only=False).astype(float)
    n_streams = pc.list_value_length(t["income_streams"]).to_numpy(zero_copy_only=False)
    return pd.DataFrame(
        {
            "customer_id": t["customer_id"].to_numpy(zero_copy_only=False),
            "monthly_income": income,
            "income_streams": np.nan_to_num(n_streams.astype(float)),
            "income_stability": np.divide(stability_w, income, out=np.zeros(n), where=income > 0),
            # With no income, any debt payment is unaffordable: cap the ratio rather than inf.
            "debt_to_income": np.where(
                income > 0,
                debt_payment / np.maximum(income, 1e-9),
                np.where(debt_payment > 0, 10.0, 0.0),
            ).clip(0, 10),
            "credit_utilisation": np.divide(
                revolving_balance, limit, out=np.zeros(n), where=limit > 0
            ).clip(0, 5),
            "total_debt": balance,
            "on_time_ratio_12m": np.divide(on_time, due, out=np.ones(n), where=due > 0),
            "late_payments_12m": due - on_time,
            "delinquencies_24m": t["delinquencies_24m"]
            .to_numpy(zero_copy_only=False)
            .astype(float),
            "savings_ratio": np.divide(
                savings, 12 * income, out=np.zeros(n), where=income > 0
            ).clip(0, 100),
        }
    )


def profile_to_frame(profile: FinancialProfile) -> pa.Table:
    """One validated profile as a one-row table, so the online path runs the batch function."""
    row = profile.model_dump(mode="python")
    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            (
                "income_streams",
                pa.list_(
                    pa.struct([("monthly_amount", pa.float64()), ("stability", pa.float64())])
                ),
            ),
            (
                "debts",
                pa.list_(
                    pa.struct(
                        [
                            ("balance", pa.float64()),
                            ("monthly_payment", pa.float64()),
                            ("credit_limit", pa.float64()),
                        ]
                    )
                ),
            ),
            ("payments_due_12m", pa.int64()),
            ("payments_on_time_12m", pa.int64()),
            ("delinquencies_24m", pa.int64()),
            ("savings_balance", pa.float64()),
        ]
    )
    data = {name: [row[name]] for name in schema.names}
    data["income_streams"] = [
        [{k: s[k] for k in ("monthly_amount", "stability")} for s in row["income_streams"]]
    ]
    data["debts"] = [
        [{k: d[k] for k in ("balance", "monthly_payment", "credit_limit")} for d in row["debts"]]
    ]
    return pa.Table.from_pydict(data, schema=schema)
