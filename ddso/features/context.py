"""Decision-context features: what describes an (offer, channel, moment) for one customer.

The conversion-propensity model scores a *candidate action* (a program offered through a
channel at a time), not a customer alone, so beside the customer features it needs features
of the offer, of the channel and of the moment, and of how the offer fits this customer's
finances. :func:`offer_context` computes them for a batch of candidate rows, in training
(one row per offer shown) and in serving (one row per eligible action), with the same code.

Input columns: ``channel``, ``product_id``, ``timestamp`` (tz-aware), ``preferred_channel``,
``birth_year``, ``monthly_income``, ``debt_to_income``; plus the products table (program
kind, price, months, margin, eligibility limits).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ddso.errors import UserError
from ddso.schemas.base import Channel
from ddso.schemas.warehouse import ProgramKind

CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
PROGRAM_KINDS: tuple[str, ...] = ProgramKind.__args__  # type: ignore[attr-defined]

FEATURE_COLUMNS: tuple[str, ...] = (
    *(f"channel_{c}" for c in CHANNELS),
    "channel_is_preferred",
    *(f"offer_kind_{k}" for k in PROGRAM_KINDS),
    "offer_price",
    "offer_months",
    "offer_monthly_payment",
    "offer_margin",
    "offer_payment_to_income",
    "offer_dti_headroom",
    "age",
    "hour_of_day",
    "day_of_week",
)
"""The context features, in model order."""

INPUT_COLUMNS = ("channel", "product_id", "timestamp", "preferred_channel", "birth_year",
                 "monthly_income", "debt_to_income")


def offer_context(rows: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """:data:`FEATURE_COLUMNS` for each candidate row (same index), from ``products``."""
    missing = [c for c in INPUT_COLUMNS if c not in rows.columns]
    if missing:
        raise UserError(f"offer context: column {missing[0]!r} is missing")
    catalogue = products.set_index("product_id")
    unknown = ~rows["product_id"].isin(catalogue.index)
    if unknown.any():
        first = rows["product_id"][unknown].iloc[0]
        raise UserError(f"offer context: unknown product_id {first!r}")
    offer = catalogue.loc[rows["product_id"]]
    months = offer["program_months"].fillna(1.0).to_numpy(dtype=float)
    price = offer["price"].to_numpy(dtype=float)
    monthly = price / np.maximum(months, 1.0)
    income = rows["monthly_income"].to_numpy(dtype=float)
    limit = offer["eligibility_max_debt_to_income"].to_numpy(dtype=float)
    ts = pd.to_datetime(rows["timestamp"], utc=True)
    channel = rows["channel"].astype(str).to_numpy()
    kind = offer["program_kind"].astype(str).to_numpy()
    out = {f"channel_{c}": (channel == c).astype(float) for c in CHANNELS}
    out["channel_is_preferred"] = (channel == rows["preferred_channel"].astype(str).to_numpy())
    out.update({f"offer_kind_{k}": (kind == k).astype(float) for k in PROGRAM_KINDS})
    out.update(
        offer_price=price,
        offer_months=months,
        offer_monthly_payment=monthly,
        offer_margin=offer["margin"].to_numpy(dtype=float),
        # With no income the payment is unaffordable: cap rather than divide by zero.
        offer_payment_to_income=np.where(income > 0, monthly / np.maximum(income, 1e-9),
                                         10.0).clip(0, 10),
        # How far below the product's debt-to-income limit the customer is (NaN: no limit).
        offer_dti_headroom=limit - rows["debt_to_income"].to_numpy(dtype=float),
        age=(ts.dt.year - rows["birth_year"]).to_numpy(dtype=float),
        hour_of_day=ts.dt.hour.to_numpy(dtype=float),
        day_of_week=ts.dt.dayofweek.to_numpy(dtype=float),
    )
    frame = pd.DataFrame(out, index=rows.index)
    frame["channel_is_preferred"] = frame["channel_is_preferred"].astype(float)
    return frame[list(FEATURE_COLUMNS)]
