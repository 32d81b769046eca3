"""Reading a generated dataset, and turning its event rows back into canonical event JSON.

:func:`event_rows_to_json` is how a dataset is replayed into Kafka or the local log: it
encodes whole groups of rows that share a type and a null pattern at once (no pydantic per
row), so replay runs at hundreds of thousands of rows a second, and every row it writes is
accepted by :func:`ddso.schemas.events.parse_event`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii  # the C encoder: escapes like json.dumps
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ddso.errors import DataFileError
from ddso.schemas.events import EVENT_MODELS
from ddso.schemas.warehouse import WAREHOUSE_TABLES


def part_files(folder: Path) -> list[Path]:
    """The ``part-*.parquet`` files of a folder, in order; a missing folder is an error."""
    files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not files:
        raise DataFileError(f"{folder}: no part-*.parquet files; is this a dataset written by "
                            "`ddso data generate`?")
    return files


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file or folder, naming the file when it is unreadable."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as err:
        raise DataFileError(f"{path}: not a readable Parquet file ({err}); regenerate the "
                            "dataset") from None


class Dataset:
    """A dataset directory written by :func:`ddso.data.generator.generate`."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        try:
            self.manifest: dict = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise DataFileError(f"{manifest}: not found; generate a dataset with "
                                "`ddso data generate --out DIR`") from None
        except (OSError, ValueError) as err:
            raise DataFileError(f"{manifest}: unreadable or not JSON ({err})") from None

    def table(self, name: str) -> pd.DataFrame:
        """One warehouse table (``customers``, ``sales``, ...) as a DataFrame."""
        if name not in WAREHOUSE_TABLES:
            raise DataFileError(f"unknown table {name!r}; choose one of "
                                f"{', '.join(WAREHOUSE_TABLES)}")
        folder = self.path / "warehouse" / name
        return pa.concat_tables([read_parquet(f) for f in part_files(folder)]).to_pandas()

    def truth(self) -> pd.DataFrame:
        """The latent per-customer drivers (for evaluation only, never features)."""
        files = part_files(self.path / "truth" / "customers")
        return pa.concat_tables([read_parquet(f) for f in files]).to_pandas()

    def event_files(self) -> list[Path]:
        return part_files(self.path / "events")

    def iter_event_batches(self, batch_rows: int = 65_536,
                           columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The event stream in file order, ``batch_rows`` rows at a time."""
        for path in self.event_files():
            try:
                for batch in pq.ParquetFile(path).iter_batches(batch_rows, columns=columns):
                    yield pa.Table.from_batches([batch])
            except (OSError, pa.ArrowException) as err:
                raise DataFileError(f"{path}: not a readable Parquet file ({err})") from None


def _fragments(name: str, col: pa.ChunkedArray) -> pa.Array:
    """``"name":<json value>`` for every (non-null) value of ``col``, as Arrow strings."""
    key = f'"{name}":'
    col = col.combine_chunks()
    tp = col.type
    if pa.types.is_timestamp(tp):
        micros = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
        text = pa.array(np.datetime_as_string(micros.astype("datetime64[us]"), unit="us"))
        return pc.binary_join_element_wise(key + '"', text, '+00:00"', "")
    if pa.types.is_string(tp) or pa.types.is_large_string(tp):
        if pc.any(pc.match_substring_regex(col, r'[\x00-\x1f"\\]')).as_py():
            text = pa.array([encode_basestring_ascii(v) for v in col.to_pylist()])
            return pc.binary_join_element_wise(key, text, "")
        return pc.binary_join_element_wise(key + '"', col, '"', "")
    if pa.types.is_boolean(tp):
        return pc.binary_join_element_wise(key, pc.if_else(col, "true", "false"), "")
    if pa.types.is_integer(tp) or pa.types.is_floating(tp):
        return pc.binary_join_element_wise(key, col.cast(pa.string()), "")
    text = [json.dumps(v, separators=(",", ":"), allow_nan=False) for v in col.to_pylist()]
    return pc.binary_join_element_wise(key, pa.array(text, pa.string()), "")


def event_rows_to_json(table: pa.Table) -> list[bytes]:
    """Each row of an events table as the JSON bytes :func:`parse_event` accepts.

    Null columns are left out, timestamps become ISO-8601 with ``+00:00``, and keys follow the
    event model's field order (columns the model lacks follow, so that such rows are rejected
    by the parser rather than silently trimmed).
    """
    n = table.num_rows
    if n == 0:
        return []
    names = table.column_names
    # Rows sharing a type and a null pattern share a key set: encode each such group at once.
    encoded = table["type"].combine_chunks().dictionary_encode()
    key = encoded.indices.to_numpy().astype(np.int64)
    types = encoded.dictionary.to_pylist()
    if len(names) > 56:  # the group key is the null bit mask and the type code in an int64
        raise DataFileError(f"events table has {len(names)} columns; at most 56 are supported")
    nulls = np.zeros(n, np.int64)
    for j, name in enumerate(names):
        if table[name].null_count:
            nulls = nulls + (table[name].is_null().to_numpy(zero_copy_only=False)
                             .astype(np.int64) << j)
    groups, inverse = np.unique(nulls * 64 + key, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inverse, minlength=len(groups)))]
    out = np.empty(n, dtype=object)
    for g, group in enumerate(groups.tolist()):
        type_code, null_bits = group % 64, group // 64
        idx = order[bounds[g]:bounds[g + 1]]
        present = [c for j, c in enumerate(names) if not (null_bits >> j) & 1]
        model = EVENT_MODELS.get(types[type_code])
        fields = list(model.model_fields) if model is not None else []
        ordered = [f for f in fields if f in present] + [c for c in present if c not in fields]
        sub = table.take(pa.array(idx))
        body = pc.binary_join_element_wise(*[_fragments(c, sub[c]) for c in ordered], ",")
        out[idx] = pc.binary_join_element_wise("{", body, "}", "").cast(pa.binary()).to_pylist()
    return out.tolist()
