"""Feature drift: the population stability index (PSI) of served features against training.

A model is only as good as the match between the rows it learned from and the rows it
scores. :class:`DriftReference` keeps, per feature, the bins of the training rows (cut at
the reference's quantiles) and the share of rows in each; it is saved with every trained
model as ``drift_reference.json`` (:data:`DRIFT_REFERENCE_FILE`). :class:`DriftMonitor`
bins each served feature vector into the same bins over an exponentially decaying window
and gives the PSI of every feature when asked (at scrape time, never per request).

The PSI of a feature, over its bins ``i`` (the finite bins plus one bin for NaN)::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

with ``e_i`` the reference's share of bin ``i`` and ``a_i`` the served share. Both are
smoothed as ``p_i <- (p_i + eps) / (1 + k * eps)`` (``k`` bins, ``eps`` 1e-4), so an empty
bin on either side gives a large but finite term. The usual reading (:func:`psi_level`):
below 0.1 stable, 0.1 to 0.25 a moderate shift worth a look, above 0.25 a significant shift
(retrain or investigate the data feed).

Bins: the reference's finite values cut at its quantiles ``1/q ... (q-1)/q`` (``q``, default
10; each cut point is a value of the data, numpy's ``inverted_cdf``), duplicate cut points
dropped, so a feature with few distinct values (counts, flags) gets a bin per value and a
constant feature gets two bins (at most the constant, and above it). Bins are closed on the
right: ``(-inf, c1], (c1, c2], ..., (c_m, inf)``, so a cut point taken from the data keeps its
own rows in the lower bin. NaN (and a feature missing from a served vector) is its own bin.
"""

from __future__ import annotations

import json
import math
import operator
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from ddso.errors import DataFileError, UserError

if TYPE_CHECKING:
    from ddso.models.registry import ModelVersion

DRIFT_REFERENCE_FILE = "drift_reference.json"
FORMAT = 1
PSI_STABLE = 0.1
"""Below this, a feature is stable."""
PSI_SIGNIFICANT = 0.25
"""Above this, a feature has shifted significantly (the alert threshold)."""
EPSILON = 1e-4


def psi_level(value: float) -> Literal["stable", "moderate", "significant"]:
    """The usual reading of a PSI value (see the module docstring)."""
    if value < PSI_STABLE:
        return "stable"
    return "moderate" if value <= PSI_SIGNIFICANT else "significant"


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray,
        eps: float = EPSILON) -> float:
    """The PSI of two distributions over the same bins (shares or counts; each is normalised)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"psi: expected and actual need the same bins, got {e.shape}, {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi: both distributions need at least one observation")
    k = len(e)
    e = (e / e.sum() + eps) / (1 + k * eps)
    a = (a / a.sum() + eps) / (1 + k * eps)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(values: np.ndarray | Sequence[float], bins: int = 10) -> np.ndarray:
    """The cut points of ``bins`` quantile bins of the finite ``values`` (duplicates dropped)."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0)
    qs = np.quantile(x, np.arange(1, bins) / bins, method="inverted_cdf")
    return np.unique(qs)


def bin_index(edges: np.ndarray, values: np.ndarray | Sequence[float]) -> np.ndarray:
    """The bin of each value: ``0 .. len(edges)`` for numbers, ``len(edges) + 1`` for NaN."""
    x = np.asarray(values, dtype=float)
    idx = np.searchsorted(edges, x, side="left")
    idx[np.isnan(x)] = len(edges) + 1
    return idx


def shares(edges: np.ndarray, values: np.ndarray | Sequence[float]) -> np.ndarray:
    """The share of ``values`` in each bin of ``edges`` (the NaN bin last)."""
    x = np.asarray(values, dtype=float)
    counts = np.bincount(bin_index(edges, x), minlength=len(edges) + 2).astype(float)
    return counts / max(len(x), 1)


def psi_of_samples(reference: np.ndarray | Sequence[float],
                   sample: np.ndarray | Sequence[float], bins: int = 10,
                   eps: float = EPSILON) -> float:
    """The PSI of ``sample`` against ``reference``, in quantile bins of the reference."""
    edges = quantile_edges(reference, bins)
    return psi(shares(edges, reference), shares(edges, sample), eps)


@dataclass(frozen=True)
class FeatureBins:
    edges: np.ndarray
    """Cut points, increasing; bins are ``(-inf, edges[0]], ..., (edges[-1], inf)``."""
    expected: np.ndarray
    """The reference's share of each bin: ``len(edges) + 1`` finite bins, then NaN."""


@dataclass(frozen=True)
class DriftReference:
    """Per-feature bins and shares of a training frame (see the module docstring)."""

    bins: dict[str, FeatureBins]
    rows: int
    quantiles: int = 10

    @property
    def features(self) -> list[str]:
        return list(self.bins)

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: Iterable[str] | None = None,
            quantiles: int = 10) -> DriftReference:
        """Bins and shares of ``frame``'s ``features`` (default: every numeric column)."""
        names = list(features) if features is not None else list(
            frame.select_dtypes("number").columns)
        missing = [f for f in names if f not in frame.columns]
        if missing:
            raise UserError(f"drift reference: feature {missing[0]!r} is not a column of the "
                            "training frame")
        if frame.empty:
            raise UserError("drift reference: the training frame has no rows")
        out = {}
        for name in names:
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(float)
            edges = quantile_edges(values, quantiles)
            out[name] = FeatureBins(edges, shares(edges, values))
        return cls(out, len(frame), quantiles)

    def psi(self, frame: pd.DataFrame, eps: float = EPSILON) -> dict[str, float]:
        """PSI per feature of a whole frame of served rows (a batch check)."""
        return {
            name: psi(b.expected, shares(b.edges, frame[name].to_numpy(float)), eps)
            for name, b in self.bins.items() if name in frame.columns
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": "quantile",
            "quantiles": self.quantiles,
            "rows": self.rows,
            "features": {
                name: {"edges": b.edges.tolist(), "expected": b.expected.tolist()}
                for name, b in self.bins.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        if data.get("format") != FORMAT:
            raise ValueError(f"drift reference format {data.get('format')!r} is not {FORMAT}")
        bins = {}
        for name, b in data["features"].items():
            edges = np.asarray(b["edges"], dtype=float)
            expected = np.asarray(b["expected"], dtype=float)
            if len(expected) != len(edges) + 2 or np.any(np.diff(edges) <= 0):
                raise ValueError(f"feature {name!r}: {len(edges)} increasing edges need "
                                 f"{len(edges) + 2} shares, got {len(expected)}")
            bins[name] = FeatureBins(edges, expected)
        return cls(bins, int(data["rows"]), int(data.get("quantiles", 10)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DriftReference:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataFileError(f"{path}: not a drift reference ({e}); retrain the model to "
                                "write a new one") from None

    @classmethod
    def of_version(cls, version: ModelVersion) -> DriftReference | None:
        """The reference saved with a registry version, or None if it was registered without."""
        if DRIFT_REFERENCE_FILE not in version.metadata.get("artifacts", {}):
            return None
        return cls.load(version.artifact(DRIFT_REFERENCE_FILE))


class DriftMonitor:
    """PSI per feature of served feature vectors over a decaying window, fed one at a time.

    :meth:`update` is on the request path, so it only picks the reference's features out of
    the vector (one ``itemgetter`` call) and appends them to a pending list; every ``block``
    vectors (and before each :meth:`psi`) the pending block is binned at once (one
    ``searchsorted`` per feature over the block's column) and added to the window. Old
    vectors fade: a vector counts ``2 ** (-age / half_life)``, its age in vectors seen since,
    applied block by block.
    :meth:`psi` does the divisions and the logs, for a scrape. :meth:`update` takes no lock
    (a list append is atomic); the binning of a block holds one, since a scrape thread and
    the request thread may both get there.
    """

    def __init__(self, reference: DriftReference, *, half_life: float = 5000.0,
                 block: int = 256, min_observations: float = 1000.0):
        if half_life <= 0 or block < 1:
            raise ValueError("half_life must be > 0 and block >= 1")
        if not reference.bins:
            raise ValueError("the drift reference has no features")
        self.reference = reference
        self.features = reference.features
        self.block = block
        self.min_observations = min_observations
        self._decay = 2.0 ** (-1.0 / half_life)
        self._get = operator.itemgetter(*self.features) if len(self.features) > 1 else (
            lambda d, _f=self.features[0]: (d[_f],))
        self._edges = [reference.bins[f].edges for f in self.features]
        sizes = np.asarray([len(e) + 2 for e in self._edges])
        ends = np.cumsum(sizes)
        self._offsets = (ends - sizes)[:, None]
        self._slices = [slice(int(e - k), int(e)) for e, k in zip(ends, sizes, strict=True)]
        self._counts = np.zeros(int(ends[-1]))
        self._pending: list[tuple[float, ...]] = []
        self._lock = threading.Lock()

    def update(self, features: Mapping[str, float]) -> None:
        """Count one served feature vector (a missing feature counts as NaN)."""
        try:
            row = self._get(features)
        except KeyError:
            row = tuple(features.get(f, math.nan) for f in self.features)
        self._pending.append(row)
        if len(self._pending) >= self.block:
            self.flush()

    def flush(self) -> None:
        """Bin the pending vectors into the window (done by :meth:`update` and :meth:`psi`)."""
        with self._lock:
            rows, self._pending = self._pending, []
            if not rows:
                return
            x = np.asarray(rows, dtype=float).T
            bins = np.empty(x.shape, dtype=np.intp)
            for i, edges in enumerate(self._edges):
                bins[i] = np.searchsorted(edges, x[i], side="left")
            # NaN sorts after every cut point (the last number bin); one more is its own bin.
            bins += np.isnan(x)
            bins += self._offsets
            block = np.bincount(bins.ravel(), minlength=len(self._counts))
            self._counts *= self._decay ** len(rows)
            self._counts += block

    @property
    def observations(self) -> float:
        """The window's effective number of vectors (the newest count 1, older ones less)."""
        self.flush()
        return float(self._counts[self._slices[0]].sum())

    def shares(self) -> dict[str, np.ndarray]:
        """Served share per bin of each feature over the window (the NaN bin last)."""
        self.flush()
        out = {}
        for f, s in zip(self.features, self._slices, strict=True):
            c = self._counts[s]
            total = c.sum()
            out[f] = c / total if total > 0 else c.copy()
        return out

    def psi(self) -> dict[str, float]:
        """PSI per feature over the window; empty until ``min_observations`` are in it."""
        if self.observations < self.min_observations:
            return {}
        return {
            f: psi(self.reference.bins[f].expected, self._counts[s])
            for f, s in zip(self.features, self._slices, strict=True)
        }
