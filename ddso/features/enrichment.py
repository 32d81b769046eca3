"""Enrichment features from external and web tables: city market conditions and web sessions.

Both are pure batch functions over warehouse tables (pyarrow or pandas in, one row per
customer out) and are point in time: no row dated after ``as_of`` is read. ``as_of`` is a
timezone-aware UTC datetime. Web-session windows are UTC calendar days, as in
:mod:`ddso.features.behaviour`: the window of ``N`` days ends with ``as_of``'s day, today
included, and only sessions started at or before ``as_of`` count.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ddso.data.dataset import part_files, read_parquet

DAY_S = 86_400

_MARKET: dict[str, str] = {
    "market_consumer_confidence": "consumer_confidence",
    "market_unemployment_rate": "unemployment_rate",
    "market_interest_rate": "avg_interest_rate",
    "market_retail_index": "retail_index",
}
"""Feature column -> MarketData column."""

MARKET_COLUMNS: tuple[str, ...] = (*_MARKET, "city_urban", "city_log_population")
"""The columns of :func:`market_features`, in model order."""
WEB_COLUMNS: tuple[str, ...] = (
    "web_sessions_28d",
    "web_avg_session_s_28d",
    "web_pages_per_session_28d",
    "web_engaged_share_28d",
    "web_mobile_share_28d",
    "web_paid_share_28d",
)
"""The columns of :func:`web_session_features`, in model order."""
FEATURE_COLUMNS: tuple[str, ...] = (*MARKET_COLUMNS, *WEB_COLUMNS)
"""All enrichment features, in model order."""

_WEB_INPUT = (
    "customer_id",
    "started_at",
    "duration_s",
    "device",
    "traffic_source",
    "page_views",
    "engaged",
)


def _table(data: pa.Table | pd.DataFrame) -> pa.Table:
    return data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)


def _np(t: pa.Table, column: str, dtype=float) -> np.ndarray:
    return t[column].to_numpy(zero_copy_only=False).astype(dtype)


def _as_of_day(as_of: datetime) -> int:
    return int(np.floor(as_of.timestamp() / DAY_S))


def market_features(
    customers: pa.Table | pd.DataFrame,
    cities: pa.Table | pd.DataFrame,
    market_data: pa.Table | pd.DataFrame,
    as_of: datetime,
) -> pd.DataFrame:
    """One row per customer: its city's market data as of ``as_of`` and the city's profile.

    The market columns come from the city's latest week with ``week_start`` on or before
    ``as_of``'s day (an as-of join). A customer whose city is unknown, or has no such week,
    gets the median across cities of the latest week any city has, or 0 without any market
    data. ``city_urban`` is 0/1 and ``city_log_population`` is ``log1p(population)``; an
    unknown city gets ``city_urban`` 0 and the median log population of all cities (0 if none).
    """
    cust = _table(customers).select(["customer_id", "city_id"]).to_pandas()
    md = _table(market_data)
    week = pc.cast(pc.cast(md["week_start"], pa.date32()), pa.int32()).to_numpy(
        zero_copy_only=False
    )
    md = md.select(["city_id", *_MARKET.values()]).to_pandas()
    md["week"] = week
    md = md[md["week"] <= _as_of_day(as_of)].sort_values(["week", "city_id"], kind="stable")
    latest = md.groupby("city_id", sort=False).tail(1).set_index("city_id")
    newest_week = md[md["week"] == md["week"].max()] if len(md) else md
    out = pd.DataFrame({"customer_id": cust["customer_id"].to_numpy()})
    for feature, source in _MARKET.items():
        default = float(newest_week[source].median()) if len(newest_week) else 0.0
        values = cust["city_id"].map(latest[source]).to_numpy(dtype=float)
        out[feature] = np.where(np.isnan(values), default, values)

    city = _table(cities)
    ids = city["city_id"].to_numpy(zero_copy_only=False)
    urban = pd.Series(_np(city, "urban"), index=ids)
    log_pop = pd.Series(np.log1p(_np(city, "population")), index=ids)
    default_log_pop = float(log_pop.median()) if len(log_pop) else 0.0
    out["city_urban"] = cust["city_id"].map(urban).fillna(0.0).to_numpy(dtype=float)
    out["city_log_population"] = (
        cust["city_id"].map(log_pop).fillna(default_log_pop).to_numpy(dtype=float)
    )
    return out


def web_session_features(
    web_sessions: pa.Table | pd.DataFrame, as_of: datetime, window_days: int = 28
) -> pd.DataFrame:
    """WebSession rows -> one row per customer with a session up to ``as_of`` (WEB_COLUMNS).

    Counts sessions started in the ``window_days`` calendar days ending with ``as_of``'s day
    (and at or before ``as_of``): their number, mean duration in seconds, page views per
    session, and the shares that were engaged, on ``device == "mobile"`` (tablets are not
    mobile here) and from ``traffic_source == "paid"``. A customer with sessions only before
    the window gets 0 everywhere; one without any session up to ``as_of`` is left out, so
    callers left-join and fill 0. The column names keep ``_28d`` whatever ``window_days`` is.
    """
    t = _table(web_sessions).select(list(_WEB_INPUT))
    micros = pc.cast(pc.cast(t["started_at"], pa.timestamp("us", tz="UTC")), pa.int64())
    started = micros.to_numpy(zero_copy_only=False) / 1e6
    seen = started <= as_of.timestamp()
    day = np.floor(started / DAY_S)
    in_window = (seen & (day > _as_of_day(as_of) - window_days)).astype(float)
    rows = pd.DataFrame(
        {
            "customer_id": t["customer_id"].to_numpy(zero_copy_only=False),
            "n": in_window,
            "duration": in_window * _np(t, "duration_s"),
            "pages": in_window * _np(t, "page_views"),
            "engaged": in_window * _np(t, "engaged"),
            "mobile": in_window * (t["device"].to_numpy(zero_copy_only=False) == "mobile"),
            "paid": in_window * (t["traffic_source"].to_numpy(zero_copy_only=False) == "paid"),
        }
    )[seen]
    sums = rows.groupby("customer_id", sort=True).sum()
    n = sums["n"].to_numpy()

    def per_session(column: str) -> np.ndarray:
        total = sums[column].to_numpy()
        return np.divide(total, n, out=np.zeros(len(n)), where=n > 0)

    return pd.DataFrame(
        {
            "customer_id": sums.index.to_numpy(),
            "web_sessions_28d": n,
            "web_avg_session_s_28d": per_session("duration"),
            "web_pages_per_session_28d": per_session("pages"),
            "web_engaged_share_28d": per_session("engaged"),
            "web_mobile_share_28d": per_session("mobile"),
            "web_paid_share_28d": per_session("paid"),
        }
    )


def _read(warehouse_dir: Path, name: str, columns: list[str]) -> pa.Table:
    files = part_files(Path(warehouse_dir) / name)
    return pa.concat_tables([read_parquet(f, columns) for f in files])


def enrichment_features(warehouse_dir: Path, as_of: datetime) -> pd.DataFrame:
    """Every customer of a dataset's ``warehouse/`` folder with all FEATURE_COLUMNS as of ``as_of``.

    Reads only the columns needed; customers without web sessions get 0 web features.
    """
    market = market_features(
        _read(warehouse_dir, "customers", ["customer_id", "city_id"]),
        _read(warehouse_dir, "cities", ["city_id", "population", "urban"]),
        _read(warehouse_dir, "market_data", ["city_id", "week_start", *_MARKET.values()]),
        as_of,
    )
    web = web_session_features(_read(warehouse_dir, "web_sessions", list(_WEB_INPUT)), as_of)
    out = market.merge(web, on="customer_id", how="left", validate="one_to_one")
    out[list(WEB_COLUMNS)] = out[list(WEB_COLUMNS)].fillna(0.0)
    return out[["customer_id", *FEATURE_COLUMNS]]
