"""The static world every customer lives in: geography, market conditions and the catalogue.

These tables are small (tens of cities, a few hundred SKUs) and are drawn once per seed,
before any customer, so that every chunk of customers shares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ddso.data.tables import build_table

DAY_US = 86_400_000_000

_REGIONS = ("North", "South", "East", "West", "Central")
_AREA_NAMES = ("Highland", "Riverside", "Coastal", "Lakeshore", "Midvale", "Plains", "Valley",
               "Harbour")
_CITY_A = ("Ash", "Bel", "Cor", "Dun", "El", "Fair", "Glen", "Hart", "Kings", "Lin", "Mar",
           "Nor", "Oak", "Pem", "Red", "Stan", "Tor", "Wey")
_CITY_B = ("ford", "ton", "bury", "field", "mouth", "wick", "ham", "port", "stead", "dale")

# Retail categories -> subcategory -> (nouns for names, median price). Word lists are readable
# so that TF-IDF on names and descriptions separates subcategories.
_RETAIL: dict[str, dict[str, tuple[tuple[str, ...], float]]] = {
    "Electronics": {"Phones": (("smartphone", "handset", "phone"), 420.0),
                    "Audio": (("headphones", "speaker", "earbuds"), 90.0),
                    "Computers": (("laptop", "tablet", "monitor"), 700.0)},
    "Home": {"Kitchen": (("blender", "kettle", "cookware set"), 60.0),
             "Furniture": (("sofa", "desk", "bookshelf"), 350.0),
             "Decor": (("lamp", "rug", "mirror"), 45.0)},
    "Fashion": {"Clothing": (("jacket", "shirt", "dress"), 55.0),
                "Shoes": (("sneakers", "boots", "sandals"), 80.0),
                "Accessories": (("watch", "handbag", "belt"), 70.0)},
    "Grocery": {"Pantry": (("coffee", "olive oil", "pasta"), 8.0),
                "Beverages": (("juice", "tea", "sparkling water"), 5.0)},
    "Beauty": {"Skincare": (("moisturiser", "serum", "cleanser"), 25.0),
               "Fragrance": (("perfume", "cologne", "body mist"), 60.0)},
    "Sports": {"Fitness": (("yoga mat", "dumbbells", "treadmill"), 120.0),
               "Outdoor": (("tent", "backpack", "bicycle"), 150.0)},
    "Travel": {"Luggage": (("suitcase", "carry-on", "duffel bag"), 110.0),
               "Trips": (("city break", "beach holiday", "weekend getaway"), 600.0)},
}
_ADJECTIVES = ("classic", "premium", "compact", "smart", "eco", "deluxe", "essential", "pro",
               "lite", "signature", "everyday", "ultra")
_PRAISE = ("durable", "well reviewed", "great value", "stylish", "easy to use", "reliable")
_BRAND_WORDS = ("Acme", "Nova", "Zenith", "Orbit", "Summit", "Harbor", "Vertex", "Maple",
                "Aurora", "Pioneer", "Atlas", "Crest", "Bluebird", "Evergreen", "Kestrel",
                "Lumen", "Monarch", "Northwind", "Quartz", "Sterling")

PROGRAM_KINDS = ("debt_consolidation", "credit_builder", "savings_plan", "card", "loan",
                 "insurance")
# kind -> (subcategory name, months options, monthly payment median, eligibility:
# min_band, max_dti, min_age, min_income, description words)
_PROGRAMS = {
    "debt_consolidation": ("Debt Relief", (24, 36), 240.0, ("D", 0.9, 21, 900.0),
                           "combine your debts into one lower monthly payment and lower interest"),
    "credit_builder": ("Credit Building", (12, 18), 45.0, ("E", 1.2, 18, 400.0),
                       "build or repair your credit score with small on-time payments"),
    "savings_plan": ("Savings", (12, 24), 150.0, ("C", 0.5, 18, 1200.0),
                     "save every month with a bonus interest rate and flexible withdrawals"),
    "card": ("Cards", (12,), 25.0, ("C", 0.6, 18, 1000.0),
             "credit card with cashback rewards and no annual fee in the first year"),
    "loan": ("Loans", (24, 36), 320.0, ("B", 0.45, 21, 2000.0),
             "personal loan with a fixed rate for home improvement or a car"),
    "insurance": ("Insurance", (12,), 35.0, ("C", None, 18, 800.0),
                  "insurance cover for home contents travel and income protection"),
}
_BANDS = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class Catalogue:
    """Arrays over products that the behaviour and funnel models index into."""

    product_ids: list[str]
    price: np.ndarray
    category: np.ndarray  # category index; the last category is the financial programs
    n_retail_categories: int
    program_products: np.ndarray  # product indices of programs
    program_kind: np.ndarray  # per program product: index into PROGRAM_KINDS
    program_months: np.ndarray
    min_band: np.ndarray  # per program: worst eligible band index (0=A .. 4=E)
    max_dti: np.ndarray  # per program: NaN means no limit
    min_age: np.ndarray
    min_income: np.ndarray
    popularity: np.ndarray  # within-category choice weights, sum to 1 per category


@dataclass(frozen=True)
class World:
    """The static tables (ready to write) and what the per-customer models need from them."""

    tables: dict[str, pa.Table]
    city_ids: list[str]
    city_weight: np.ndarray
    city_urban: np.ndarray
    catalogue: Catalogue


def _geography(rng: np.random.Generator) -> dict[str, pa.Table]:
    areas = build_table("areas", {
        "area_id": [f"area{i:02d}" for i in range(len(_AREA_NAMES))],
        "name": list(_AREA_NAMES),
        "region": [_REGIONS[i % len(_REGIONS)] for i in range(len(_AREA_NAMES))],
    })
    names = sorted({a + b for a in _CITY_A for b in _CITY_B})
    chosen = rng.choice(len(names), size=60, replace=False)
    population = np.round(rng.lognormal(11.0, 1.2, size=60)).astype(np.int64) + 5_000
    cities = build_table("cities", {
        "city_id": [f"city{i:03d}" for i in range(60)],
        "area_id": [f"area{a:02d}" for a in rng.integers(0, len(_AREA_NAMES), size=60)],
        "name": [names[i] for i in chosen],
        "population": population,
        "urban": population > 100_000,
    })
    return {"areas": areas, "cities": cities}


def _market(rng: np.random.Generator, city_ids: list[str], weeks: np.ndarray) -> pa.Table:
    n_c, n_w = len(city_ids), len(weeks)
    week_of_year = ((weeks - weeks.astype("datetime64[Y]")).astype(int) // 7).astype(float)
    # Retail peaks in late November and December; confidence drifts as a shared random walk.
    season = 1 + 0.25 * np.exp(-((week_of_year - 50) ** 2) / 8) - 0.06 * np.cos(
        2 * np.pi * week_of_year / 52)
    drift = np.cumsum(rng.normal(0, 0.8, n_w))
    city_level = rng.normal(0, 6, n_c)[:, None]
    confidence = np.clip(100 + city_level + drift[None, :] + rng.normal(0, 1.5, (n_c, n_w)), 0, 200)
    unemployment = np.clip(0.06 - city_level / 300 + rng.normal(0, 0.004, (n_c, n_w)), 0.01, 0.3)
    rate = np.clip(0.045 + np.cumsum(rng.normal(0, 0.0008, n_w))[None, :]
                   + np.zeros((n_c, 1)), 0.001, 0.2)
    retail = np.clip(100 * season[None, :] * (confidence / 100) ** 0.5
                     * rng.lognormal(0, 0.02, (n_c, n_w)), 0, 1000)
    return build_table("market_data", {
        "city_id": np.repeat(np.array(city_ids, dtype=object), n_w).tolist(),
        "week_start": np.tile(weeks, n_c),
        "consumer_confidence": confidence.ravel(),
        "unemployment_rate": unemployment.ravel(),
        "avg_interest_rate": rate.ravel(),
        "retail_index": retail.ravel(),
    })


def _catalogue(rng: np.random.Generator) -> tuple[dict[str, pa.Table], Catalogue]:
    brands = list(_BRAND_WORDS)
    categories = [*_RETAIL, "Financial Programs"]
    rows: dict[str, list] = {k: [] for k in ("product_id", "name", "description", "brand_id",
                                             "category_id", "subcategory_id", "price", "margin",
                                             "program_kind", "program_months")}
    elig: dict[str, list] = {k: [] for k in ("min_band", "max_dti", "min_age", "min_income")}
    sub_rows, cat_of = [], []
    for ci, (cat, subs) in enumerate(_RETAIL.items()):
        for sub, (nouns, median) in subs.items():
            si = len(sub_rows)
            sub_rows.append((f"sub{si:03d}", f"cat{ci:02d}", sub))
            for _ in range(int(rng.integers(10, 18))):
                adj, noun = rng.choice(_ADJECTIVES), rng.choice(nouns)
                b = int(rng.integers(len(brands)))
                praise = rng.choice(_PRAISE, size=2, replace=False)
                rows["name"].append(f"{brands[b]} {adj} {noun}")
                rows["description"].append(
                    f"A {adj} {noun} from {brands[b]} in our {sub.lower()} range for "
                    f"{cat.lower()}: {praise[0]} and {praise[1]}.")
                rows["brand_id"].append(f"brand{b:02d}")
                rows["category_id"].append(f"cat{ci:02d}")
                rows["subcategory_id"].append(sub_rows[si][0])
                rows["price"].append(round(float(rng.lognormal(np.log(median), 0.45)), 2))
                rows["margin"].append(round(float(rng.uniform(0.08, 0.45)), 3))
                rows["program_kind"].append(None)
                rows["program_months"].append(None)
                for k in elig:
                    elig[k].append(None)
                cat_of.append(ci)
    fin = len(categories) - 1
    for kind, (sub, months_opts, payment, rule, words) in _PROGRAMS.items():
        si = len(sub_rows)
        sub_rows.append((f"sub{si:03d}", f"cat{fin:02d}", sub))
        for tier, months in enumerate(months_opts * 2):
            label = ("Standard", "Plus", "Flex", "Select")[tier]
            rows["name"].append(f"{sub} {label} {months}m")
            rows["description"].append(f"{sub} program over {months} months: {words}.")
            rows["brand_id"].append("brand00")
            rows["category_id"].append(f"cat{fin:02d}")
            rows["subcategory_id"].append(sub_rows[si][0])
            monthly = payment * (1 + 0.3 * tier) * rng.uniform(0.9, 1.1)
            rows["price"].append(round(monthly * months, 2))
            rows["margin"].append(round(float(rng.uniform(0.05, 0.2)), 3))
            rows["program_kind"].append(kind)
            rows["program_months"].append(months)
            band, dti, age, income = rule
            elig["min_band"].append(band)
            elig["max_dti"].append(dti)
            elig["min_age"].append(age)
            elig["min_income"].append(income * (1 + 0.3 * tier))
            cat_of.append(fin)
    n = len(rows["name"])
    rows["product_id"] = [f"p{i:04d}" for i in range(n)]
    products = build_table("products", {**rows, **{f"eligibility_{k}": v for k, v in zip(
        ("min_band", "max_debt_to_income", "min_age", "min_income_monthly"), elig.values(),
        strict=True)}})
    cat_of_arr = np.array(cat_of)
    popularity = rng.pareto(1.2, n) + 0.05  # a few best sellers per category
    for c in range(len(categories)):
        popularity[cat_of_arr == c] /= popularity[cat_of_arr == c].sum()
    programs = np.flatnonzero(cat_of_arr == fin)
    catalogue = Catalogue(
        product_ids=rows["product_id"], price=np.array(rows["price"]), category=cat_of_arr,
        n_retail_categories=fin, program_products=programs,
        program_kind=np.array([PROGRAM_KINDS.index(rows["program_kind"][i]) for i in programs]),
        program_months=np.array([rows["program_months"][i] for i in programs]),
        min_band=np.array([_BANDS.index(elig["min_band"][i]) for i in programs]),
        max_dti=np.array([np.nan if elig["max_dti"][i] is None else elig["max_dti"][i]
                          for i in programs]),
        min_age=np.array([elig["min_age"][i] for i in programs]),
        min_income=np.array([elig["min_income"][i] for i in programs]),
        popularity=popularity,
    )
    tables = {
        "brands": build_table("brands", {"brand_id": [f"brand{i:02d}" for i in range(len(brands))],
                                         "name": brands}),
        "categories": build_table("categories", {
            "category_id": [f"cat{i:02d}" for i in range(len(categories))], "name": categories}),
        "subcategories": build_table("subcategories", {
            k: [r[i] for r in sub_rows]
            for i, k in enumerate(("subcategory_id", "category_id", "name"))}),
        "products": products,
    }
    return tables, catalogue


def build_world(rng: np.random.Generator, start: np.datetime64, days: int) -> World:
    """Draw the static tables for a window of ``days`` days from ``start``."""
    tables = _geography(rng)
    city_ids = tables["cities"]["city_id"].to_pylist()
    population = tables["cities"]["population"].to_numpy().astype(float)
    day0 = start.astype("datetime64[D]")
    first_monday = day0 - (day0.astype(int) - 4) % 7  # 1970-01-05 was a Monday
    weeks = np.arange(first_monday, day0 + days, np.timedelta64(7, "D"))
    tables["market_data"] = _market(rng, city_ids, weeks)
    cat_tables, catalogue = _catalogue(rng)
    tables.update(cat_tables)
    return World(tables=tables, city_ids=city_ids, city_weight=population / population.sum(),
                 city_urban=tables["cities"]["urban"].to_numpy(zero_copy_only=False),
                 catalogue=catalogue)
