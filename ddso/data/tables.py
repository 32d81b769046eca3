"""Arrow schemas derived from the pydantic row models, and the way back from a flat row.

A warehouse table's Parquet columns are its model's fields, with nested models flattened
with ``_`` (``consent_email``) and lists of models kept as ``list<struct>``. Deriving the
schema from the model, rather than writing it twice, keeps the files and the models in step.
"""

from __future__ import annotations

import types
import typing
from datetime import date, datetime
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from ddso.schemas.warehouse import WAREHOUSE_TABLES

TIMESTAMP = pa.timestamp("us", tz="UTC")


def _unwrap(annotation: Any) -> Any:
    """Strip ``Optional`` and ``Annotated`` down to the underlying type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _arrow_type(annotation: Any) -> pa.DataType:
    tp = _unwrap(annotation)
    origin = typing.get_origin(tp)
    if origin is list:
        item = _unwrap(typing.get_args(tp)[0])
        return pa.list_(_arrow_type(item))
    if origin is typing.Literal or (isinstance(tp, type) and issubclass(tp, Enum | str)):
        return pa.string()
    if _is_model(tp):
        return pa.struct([pa.field(n, _arrow_type(f.annotation))
                          for n, f in tp.model_fields.items()])
    if tp is bool:
        return pa.bool_()
    if tp is int:
        return pa.int64()
    if tp is float:
        return pa.float64()
    if tp is datetime or getattr(tp, "__name__", "") == "AwareDatetime":
        return TIMESTAMP
    if tp is date:
        return pa.date32()
    raise TypeError(f"no Arrow type for annotation {annotation!r}")


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The flat Parquet schema of ``model``: nested models flattened with ``_``."""
    fields = []
    for name, info in model.model_fields.items():
        tp = _unwrap(info.annotation)
        if _is_model(tp):
            fields.extend(pa.field(f"{name}_{f.name}", f.type) for f in arrow_schema(tp))
        else:
            fields.append(pa.field(name, _arrow_type(info.annotation)))
    return pa.schema(fields)


WAREHOUSE_SCHEMAS: dict[str, pa.Schema] = {n: arrow_schema(m) for n, m in WAREHOUSE_TABLES.items()}
"""Table name -> the Arrow schema its Parquet files have."""


def build_table(name: str, columns: dict[str, Any]) -> pa.Table:
    """A warehouse table from column arrays, cast to the table's schema.

    Timestamps may be given as int64 microseconds since the epoch; every schema column must be
    present, so a missing one is a bug here rather than a silent null in the files.
    """
    schema = WAREHOUSE_SCHEMAS[name]
    missing = set(schema.names) ^ set(columns)
    if missing:
        raise KeyError(f"table {name}: columns {sorted(missing)} missing or unexpected")
    arrays = []
    for field in schema:
        value = columns[field.name]
        if field.type == TIMESTAMP and isinstance(value, np.ndarray):
            value = pa.array(value.astype("datetime64[us]")).cast(TIMESTAMP)
        elif field.type == pa.date32() and isinstance(value, np.ndarray):
            value = pa.array(value.astype("datetime64[D]"))
        arrays.append(value if isinstance(value, pa.Array | pa.ChunkedArray) else pa.array(value))
    return pa.Table.from_arrays(arrays, names=schema.names).cast(schema)


def unflatten_row(model: type[BaseModel], row: dict[str, Any]) -> dict[str, Any]:
    """Turn a flat Parquet row back into the nested dict ``model`` validates."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        tp = _unwrap(info.annotation)
        if _is_model(tp):
            sub = {f: row[f"{name}_{f}"] for f in tp.model_fields}
            out[name] = {k: v for k, v in sub.items() if v is not None}
        elif row.get(name) is not None:
            out[name] = row[name]
    return out
