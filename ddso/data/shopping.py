"""Web and app behaviour: sessions, views, clicks, carts and purchases, with their tables.

Sessions arrive as a Poisson process whose rate is the segment's, times a heavy-tailed
personal multiplier, times a calendar (weekday profile, a Black-Friday and December peak);
each session is a short funnel of views -> clicks -> cart adds/removes -> maybe a purchase.
Promotions (more of them in November and December) lift buying in price-sensitive customers,
so the discount share of a customer's purchases reveals their price sensitivity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ddso.data.event_table import DEVICES, SOURCES, TRAFFIC, EventBuilder, Lines, chunk_ids
from ddso.data.population import BUY_RATE, CART_RATE, SESSIONS_PER_WEEK, Population
from ddso.data.tables import build_table
from ddso.data.world import DAY_US, World

SECOND_US = 1_000_000
_HOUR_P = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 3.5, 3.8, 4, 4.5, 4.2, 4, 4, 4.2, 4.8,
                    5.5, 6.5, 7, 6, 4, 2.2])
_HOUR_CDF = np.cumsum(_HOUR_P) / _HOUR_P.sum()
_WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.3, 1.2])  # Monday first


@dataclass(frozen=True)
class Calendar:
    """Day-level activity weights over the window and their cumulative sum."""

    start_us: int
    days: int
    cdf: np.ndarray  # length days + 1, cdf[0] == 0, in units of average days
    promo: np.ndarray  # per day: probability that a session sees a promotion

    @classmethod
    def build(cls, start: np.datetime64, days: int) -> Calendar:
        day = np.arange(start.astype("datetime64[D]"), start + days).astype("datetime64[D]")
        doy = (day - day.astype("datetime64[Y]")).astype(int)
        weekday = (day.astype(int) - 4) % 7
        weight = _WEEKDAY[weekday] * (1 + 0.6 * np.exp(-(((doy - 352) / 10) ** 2))
                                      + 0.5 * np.exp(-(((doy - 331) / 4) ** 2))
                                      - 0.1 * np.exp(-(((doy - 40) / 20) ** 2)))
        weight = weight / weight.mean()
        promo = 0.12 + 0.3 * np.exp(-(((doy - 331) / 6) ** 2)) + 0.2 * (doy > 345)
        return cls(int(start.astype("datetime64[us]").astype(np.int64)), days,
                   np.r_[0.0, np.cumsum(weight)], promo)

    def mass(self, a_us: np.ndarray, b_us: np.ndarray) -> np.ndarray:
        """Weighted days between ``a`` and ``b`` (an ordinary day weighs 1)."""
        grid = np.arange(self.days + 1)
        return np.interp((b_us - self.start_us) / DAY_US, grid, self.cdf) - np.interp(
            (a_us - self.start_us) / DAY_US, grid, self.cdf)

    def sample(self, rng: np.random.Generator, a_us: np.ndarray, b_us: np.ndarray) -> np.ndarray:
        """One timestamp in each ``[a, b)``, following the day weights and the hour profile."""
        grid = np.arange(self.days + 1)
        lo = np.interp((a_us - self.start_us) / DAY_US, grid, self.cdf)
        hi = np.interp((b_us - self.start_us) / DAY_US, grid, self.cdf)
        day = np.floor(np.interp(lo + rng.random(len(a_us)) * (hi - lo), self.cdf, grid))
        hour = np.searchsorted(_HOUR_CDF, rng.random(len(a_us)))
        t = self.start_us + (day * DAY_US).astype(np.int64) + hour * 3600 * SECOND_US + (
            rng.random(len(a_us)) * 3600 * SECOND_US).astype(np.int64)
        return np.clip(t, a_us, b_us - 1)


@dataclass(frozen=True)
class Behaviour:
    """The behaviour tables of a chunk, its purchase lines and per-customer program views."""

    tables: dict[str, pa.Table]
    lines: Lines
    program_views: np.ndarray


def within_group_cumsum(values: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at each new ``owner`` (owners are sorted)."""
    total = np.cumsum(values)
    first = np.r_[True, owner[1:] != owner[:-1]]
    base = np.repeat((total - values)[first], np.diff(np.r_[np.flatnonzero(first), len(owner)]))
    return total - base


def draw_sessions(rng: np.random.Generator, pop: Population, world: World, cal: Calendar,
                  active_from: np.ndarray, active_to: np.ndarray, churn_us: np.ndarray,
                  events: EventBuilder) -> Behaviour:
    """Add the chunk's behaviour events; return their tables and what the funnel reads."""
    n = len(pop.segment)
    weeks = cal.mass(active_from, np.maximum(active_to, active_from)) / 7
    n_sess = rng.poisson(SESSIONS_PER_WEEK[pop.segment] * pop.activity * weeks)
    owner = np.repeat(np.arange(n), n_sess)
    t0 = cal.sample(rng, active_from[owner], active_to[owner])
    # Dormant customers fade over the window and everyone thins out before churning, so
    # that recency and frequency carry the churn signal a model should find.
    keep = np.ones(len(owner), bool)
    dormant = pop.segment[owner] == 4
    keep[dormant] = rng.random(dormant.sum()) < np.exp(-(t0[dormant] - cal.start_us) / (
        120 * DAY_US))
    to_churn = (churn_us[owner] - t0) / (60 * DAY_US)
    keep &= rng.random(len(owner)) < np.clip(to_churn, 0.05, 1)
    order = np.lexsort((t0[keep], owner[keep]))
    owner, t0 = owner[keep][order], t0[keep][order]
    n_s = len(owner)
    seg = pop.segment[owner]
    device = rng.choice(3, n_s, p=[0.35, 0.55, 0.10])
    source = np.where((device == 1) & (rng.random(n_s) < 0.6), SOURCES.index("app"),
                      SOURCES.index("web"))
    traffic = rng.choice(len(TRAFFIC), n_s, p=[0.3, 0.15, 0.1, 0.1, 0.3, 0.05])
    day = np.clip((t0 - cal.start_us) // DAY_US, 0, cal.days - 1)
    promo = rng.random(n_s) < cal.promo[day]
    sid = np.arange(n_s)
    events.add("session_start", owner, t0, session_id=sid, source=source, device=device,
               traffic_source=traffic)

    # Views: the category from the customer's tastes, the SKU by popularity within it.
    n_views = 1 + rng.poisson(1.5 * (0.7 + 0.6 * pop.interest[owner]))
    vs = np.repeat(sid, n_views)
    vcust = owner[vs]
    vt = t0[vs] + within_group_cumsum(
        (rng.exponential(40, len(vs)) * SECOND_US).astype(np.int64) + SECOND_US, vs)
    cum_taste = np.cumsum(pop.affinity, 1)
    cat = (rng.random(len(vs))[:, None] > cum_taste[vcust]).sum(1)
    cat = np.minimum(cat, cum_taste.shape[1] - 1)
    cg = world.catalogue
    product = np.zeros(len(vs), np.int64)
    for c in range(cum_taste.shape[1]):
        members = np.flatnonzero(cg.category == c)
        sel = cat == c
        pick = np.searchsorted(np.cumsum(cg.popularity[members]), rng.random(sel.sum()))
        product[sel] = members[np.minimum(pick, len(members) - 1)]
    price = cg.price[product]
    events.add("view", vcust, vt, session_id=vs, product_id=product, price=price,
               source=source[vs])
    clicked = rng.random(len(vs)) < 0.35
    events.add("click", vcust[clicked], vt[clicked] + SECOND_US, session_id=vs[clicked],
               product_id=product[clicked], element=np.zeros(clicked.sum(), np.int64),
               source=source[vs][clicked])
    banner = np.flatnonzero(rng.random(n_s) < 0.08)
    events.add("click", owner[banner], t0[banner] + SECOND_US // 2, session_id=sid[banner],
               element=rng.integers(1, 4, len(banner)), source=source[banner])

    # Carts: never programs (they are applied for, not bought); promotions tempt the
    # price-sensitive and put off no one.
    ps = pop.price_sensitivity[vcust]
    p_cart = CART_RATE[pop.segment[vcust]] * np.where(promo[vs], 1 + 2 * ps, 1 - 0.5 * ps)
    carted = (rng.random(len(vs)) < p_cart) & (cat < cg.n_retail_categories)
    a_idx = np.flatnonzero(carted)
    qty = 1 + rng.poisson(0.3, len(a_idx))
    at = vt[a_idx] + (rng.exponential(20, len(a_idx)) * SECOND_US).astype(np.int64) + SECOND_US
    events.add("cart_add", vcust[a_idx], at, session_id=vs[a_idx], product_id=product[a_idx],
               quantity=qty, unit_price=price[a_idx], source=source[vs[a_idx]])
    removed = rng.random(len(a_idx)) < 0.2
    rt = at[removed] + (rng.exponential(30, removed.sum()) * SECOND_US).astype(np.int64) + 1
    events.add("cart_remove", vcust[a_idx][removed], rt, session_id=vs[a_idx][removed],
               product_id=product[a_idx][removed], quantity=qty[removed],
               source=source[vs[a_idx][removed]])

    # Purchases: a session whose cart kept a line buys with the segment's rate.
    line = a_idx[~removed]
    line_s = vs[line]
    has_cart = np.bincount(line_s, minlength=n_s) > 0
    buy_p = BUY_RATE[seg] * np.where(promo, 1 + 0.5 * pop.price_sensitivity[owner], 1)
    bought = has_cart & (rng.random(n_s) < buy_p)
    sale_of_session = np.full(n_s, -1)
    sale_of_session[bought] = np.arange(bought.sum())
    last_cart = np.full(n_s, np.iinfo(np.int64).min)
    np.maximum.at(last_cart, line_s, at[~removed])
    pt = last_cart + (rng.exponential(60, n_s) * SECOND_US).astype(np.int64) + SECOND_US
    in_sale = bought[line_s]
    l_sale = sale_of_session[line_s[in_sale]]
    l_order = np.argsort(l_sale, kind="stable")
    discount = np.where(promo[line_s[in_sale]], rng.choice([0.1, 0.2, 0.3], in_sale.sum()), 0.0)
    lines = Lines(sale=l_sale[l_order], product=product[line[in_sale]][l_order],
                  quantity=qty[~removed][in_sale][l_order],
                  unit_price=price[line[in_sale]][l_order], discount=discount[l_order])
    b = np.flatnonzero(bought)
    sale_channel = np.where(source[b] == SOURCES.index("app"), 1, 0)
    events.add("purchase", owner[b], pt[b], sale_id=sale_of_session[b], channel=sale_channel,
               source=source[b])

    last_view = np.full(n_s, 0, np.int64)
    np.maximum.at(last_view, vs, vt)
    finish = np.maximum(np.maximum(last_view, np.where(bought, pt, 0)), t0)
    duration = (finish - t0) / SECOND_US + rng.exponential(30, n_s)
    line_total = lines.quantity * lines.unit_price * (1 - lines.discount)
    sale_ids = chunk_ids("o", events.chunk, np.arange(len(b)))
    tables = {
        "web_sessions": build_table("web_sessions", {
            "session_id": chunk_ids("s", events.chunk, sid),
            "customer_id": pop.ids.take(pa.array(owner)),
            "started_at": t0,
            "duration_s": np.round(np.minimum(duration, 86_400), 1),
            "device": pa.array(DEVICES).take(pa.array(device)),
            "traffic_source": pa.array(TRAFFIC).take(pa.array(traffic)),
            "page_views": n_views.astype(np.int64),
            "engaged": (duration > 10) & ((n_views >= 2) | has_cart),
        }),
        "sales": build_table("sales", {
            "sale_id": sale_ids,
            "customer_id": pop.ids.take(pa.array(owner[b])),
            "sold_at": pt[b],
            "channel": pa.array(["web", "app"]).take(pa.array(sale_channel)),
            "city_id": pa.array(world.city_ids).take(pa.array(pop.city[owner[b]])),
            "total_amount": np.round(np.bincount(lines.sale, weights=line_total,
                                                 minlength=len(b)), 2),
        }),
        "sales_details": build_table("sales_details", {
            "sale_id": sale_ids.take(pa.array(lines.sale)),
            "line_no": (within_group_cumsum(np.ones(len(lines.sale), np.int64), lines.sale)
                        if len(lines.sale) else np.zeros(0, np.int64)),
            "product_id": pa.array(world.catalogue.product_ids).take(pa.array(lines.product)),
            "quantity": lines.quantity.astype(np.int64),
            "unit_price": lines.unit_price,
            "discount": lines.discount,
        }),
    }
    return Behaviour(tables, lines, np.bincount(vcust[cat == cg.n_retail_categories],
                                                minlength=n))
