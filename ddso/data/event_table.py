"""The flat event table: its union schema, and a builder that assembles one chunk's events.

Generators add events type by type as numpy columns (ids as integers, categorical values
as codes into a vocabulary); :meth:`EventBuilder.finish` sorts them by customer and event
time and turns them into one Arrow table whose columns are the union of all event models'
fields, null where a type lacks the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ddso.data.tables import TIMESTAMP
from ddso.schemas.events import EVENT_TYPES

LINE_TYPE = pa.struct([("product_id", pa.string()), ("quantity", pa.int64()),
                       ("unit_price", pa.float64()), ("discount", pa.float64())])

SOURCES = ("web", "app", "crm", "pos", "core_banking", "partner", "api", "simulator")
SALE_CHANNELS = ("web", "app", "branch", "call_center", "partner")
CONTACT_CHANNELS = ("email", "sms", "call", "app_push")
OUTCOMES = ("no_answer", "positive", "neutral", "negative", "callback", "unsubscribed")
REASONS = ("missed_payments", "voluntary", "moved", "other", "closed_accounts", "inactive",
           "competitor", "complaint")
DEVICES = ("desktop", "mobile", "tablet")
TRAFFIC = ("organic", "paid", "email", "social", "direct", "referral")
COMPLAINT_CATEGORIES = ("fees", "service", "product", "fraud", "other")
ELEMENTS = ("product_card", "banner", "search", "menu")
AGENTS = tuple(f"agent{i:03d}" for i in range(40))

# name -> how it is given to EventBuilder.add: ("id", prefix) numbers, ("cat", vocab) codes,
# "float", "int" (negative = null), or the special columns handled in finish().
COLUMN_SPECS: dict[str, object] = {
    "event_id": "special", "type": "special", "customer_id": "special",
    "event_time": "special", "source": ("cat", SOURCES),
    "session_id": ("id", "s"), "device": ("cat", DEVICES), "traffic_source": ("cat", TRAFFIC),
    "product_id": ("cat", None), "price": "float", "element": ("cat", ELEMENTS),
    "quantity": "int", "unit_price": "float", "sale_id": ("id", "o"),
    "channel": ("cat", SALE_CHANNELS + CONTACT_CHANNELS), "lines": "special",
    "interaction_id": ("id", "i"), "agent_id": ("cat", AGENTS), "outcome": ("cat", OUTCOMES),
    "duration_s": "float", "complaint_id": ("id", "q"),
    "category": ("cat", COMPLAINT_CATEGORIES), "severity": "int", "offer_id": ("id", "f"),
    "decision_id": ("id", "d"), "enrollment_id": ("id", "n"), "monthly_payment": "float",
    "amount": "float", "days_late": "int", "reason": ("cat", REASONS),
}
EVENT_SCHEMA = pa.schema(
    [pa.field("event_id", pa.string()), pa.field("type", pa.string()),
     pa.field("customer_id", pa.string()), pa.field("event_time", TIMESTAMP)]
    + [pa.field(n, pa.list_(LINE_TYPE) if n == "lines" else pa.float64() if s == "float"
                else pa.int64() if s == "int" else pa.string())
       for n, s in COLUMN_SPECS.items()
       if n not in ("event_id", "type", "customer_id", "event_time")])
"""The columns of ``events/part-*.parquet``: the union of every event model's fields."""


def chunk_ids(prefix: str, chunk: int, numbers: np.ndarray) -> pa.Array:
    """Ids unique across a dataset: ``<prefix><chunk>-<number>``; negative numbers are null."""
    arr = pc.cast(pa.array(numbers, mask=numbers < 0), pa.string())
    return pc.binary_join_element_wise(pa.scalar(f"{prefix}{chunk}-"), arr, "")


@dataclass
class Lines:
    """Purchase lines, grouped by sale number (ascending), one row per line."""

    sale: np.ndarray
    product: np.ndarray
    quantity: np.ndarray
    unit_price: np.ndarray
    discount: np.ndarray


@dataclass
class EventBuilder:
    """Collects one chunk's events, then sorts and encodes them (see module docstring)."""

    chunk: int
    product_ids: list[str]
    _parts: list[tuple[int, np.ndarray, np.ndarray, dict]] = field(default_factory=list)

    def add(self, type_: str, cust: np.ndarray, t_us: np.ndarray, **columns: np.ndarray) -> None:
        """Add events of one type; ``columns`` follow :data:`COLUMN_SPECS` (``source`` too)."""
        if len(cust):
            self._parts.append((EVENT_TYPES.index(type_), cust, t_us, columns))

    def finish(self, customer_ids: pa.Array, lines: Lines) -> pa.Table:
        """The chunk's events as a table of :data:`EVENT_SCHEMA`, by customer then time."""
        sizes = [len(p[1]) for p in self._parts]
        cust = np.concatenate([p[1] for p in self._parts] or [np.zeros(0, np.int64)])
        t = np.concatenate([p[2] for p in self._parts] or [np.zeros(0, np.int64)])
        type_code = np.repeat([p[0] for p in self._parts], sizes).astype(np.int64)
        # A stable sort keeps the order of add() for ties, so a purchase added after its cart
        # events stays after them even at the same microsecond.
        order = np.lexsort((t, cust))
        cust, t, type_code = cust[order], t[order], type_code[order]
        arrays: dict[str, pa.Array] = {
            "event_id": chunk_ids("e", self.chunk, np.arange(len(t))),
            "type": pa.array(EVENT_TYPES).take(pa.array(type_code)),
            "customer_id": customer_ids.take(pa.array(cust)),
            "event_time": pa.array(t.astype("datetime64[us]")).cast(TIMESTAMP),
        }
        for name, spec in COLUMN_SPECS.items():
            if spec == "special":
                continue
            is_float = spec == "float"
            fill = np.nan if is_float else -1
            col = np.concatenate([np.asarray(p[3][name]) if name in p[3]
                                  else np.full(n, fill, np.float64 if is_float else np.int64)
                                  for p, n in zip(self._parts, sizes, strict=True)]
                                 or [np.zeros(0)])[order]
            if is_float:
                arrays[name] = pa.array(col, mask=np.isnan(col))
            elif spec == "int":
                arrays[name] = pa.array(col.astype(np.int64), mask=col < 0)
            elif spec[0] == "id":
                if name == "sale_id":
                    sale_col = col.astype(np.int64)
                arrays[name] = chunk_ids(spec[1], self.chunk, col.astype(np.int64))
            else:
                vocab = spec[1] if spec[1] is not None else self.product_ids
                codes = col.astype(np.int64)
                arrays[name] = pa.array(vocab).take(pa.array(codes, mask=codes < 0))
        arrays["lines"] = self._lines(sale_col, type_code, lines)
        return pa.Table.from_arrays([arrays[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)

    def _lines(self, sale_col: np.ndarray, type_code: np.ndarray, lines: Lines) -> pa.Array:
        is_purchase = type_code == EVENT_TYPES.index("purchase")
        sale_nums = sale_col[is_purchase]
        n_sales = int(lines.sale.max()) + 1 if len(lines.sale) else 0
        first = np.searchsorted(lines.sale, np.arange(n_sales + 1))
        counts = np.zeros(len(type_code), np.int64)
        counts[is_purchase] = first[sale_nums + 1] - first[sale_nums]
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
        # Line indices of each purchase row, in row order: a run starting at first[sale].
        starts = np.repeat(first[sale_nums], counts[is_purchase])
        within = np.arange(len(starts)) - np.repeat(offsets[:-1][is_purchase],
                                                    counts[is_purchase])
        idx = starts + within
        values = pa.StructArray.from_arrays(
            [pa.array(self.product_ids).take(pa.array(lines.product[idx])),
             pa.array(lines.quantity[idx].astype(np.int64)),
             pa.array(lines.unit_price[idx]), pa.array(lines.discount[idx])],
            fields=list(LINE_TYPE))
        return pa.ListArray.from_arrays(pa.array(offsets), values, type=pa.list_(LINE_TYPE),
                                        mask=pa.array(~is_purchase))
