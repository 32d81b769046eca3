"""Customer segmentation: RFM, behavioural and financial features -> named segments.

:class:`Segmenter` standardises a handful of features (``log1p`` first for the heavy-tailed
money, count and day columns, so that a few big spenders or ten-year "never" recencies do not
dominate the distances), clusters them, and names every segment from its centre with explicit
rules (:func:`name_segment`). K-Means is the default and the only method that can serve
customers one at a time exactly as it clustered them; DBSCAN and agglomerative (Ward) are there
for comparison, and serve by the nearest segment mean.

    seg = Segmenter().fit(features)           # k chosen by silhouette over 2..8
    seg.profiles_                             # size, share and raw means per segment
    seg.assign_one(customer_features)         # (label, name) in microseconds
    seg.stability(features)                   # ARI of refits on subsamples
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from ddso.errors import NotFittedError, UserError
from ddso.features.behaviour import NEVER_DAYS
from ddso.features.registry import BY_NAME

DEFAULT_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency_365d",
    "monetary_365d",
    "views_30d",
    "sessions_90d",
    "cart_abandonment_30d",
    "discount_share_365d",
    "debt_to_income",
    "on_time_ratio_12m",
    "savings_ratio",
)
"""Two RFM-and-a-bit, two browsing, two buying-style and three financial-health signals."""

# Counts, amounts and day spans: non-negative with long right tails.
_LOG_PREFIXES = ("recency_", "frequency_", "monetary_", "avg_order_value_", "views_", "clicks_")
_LOG_PREFIXES += ("cart_adds_", "sessions_", "days_since_", "tenure_")
LOG_FEATURES: frozenset[str] = frozenset(
    {n for n in BY_NAME if n.startswith(_LOG_PREFIXES)}
    | {"debt_to_income", "total_debt", "monthly_income"}
)
"""Non-negative, heavy-tailed columns that are ``log1p``-transformed before scaling."""

METHODS = ("kmeans", "dbscan", "agglomerative")
UNASSIGNED = "unassigned"
K_RANGE = range(2, 9)
SILHOUETTE_ROWS = 5_000
PAIRWISE_ROWS = 10_000
"""DBSCAN and Ward need memory quadratic in the rows; beyond this they fit on a sample."""
SINGLE_THREAD_ROWS = 50_000
"""Below this many rows, fits run on one thread: OpenMP start-up and spin-waiting cost more
than they save on small inputs (measured: K-Means on 400 rows took 1-3 s with 2 busy threads on
a loaded 2-core host and 20-90 ms on one)."""

# Centre z-scores above/below these count as "high"/"low" for the naming rules.
_HIGH = 0.5
_LOW = -0.5


def _z(center: Mapping[str, float], name: str) -> float:
    return center.get(name, 0.0)


def name_segment(center: Mapping[str, float], raw_means: Mapping[str, float]) -> str:
    """The archetype of a segment, from its centre (z-scores) and its raw feature means.

    Rules, first match wins:

    1. ``high-value loyal``: monetary and frequency high, recency low.
    2. ``financially stretched``: debt-to-income high or on-time payments low.
    3. ``browses, rarely buys``: views or sessions high, frequency below average.
    4. ``bargain hunters``: discount share high.
    5. ``at risk``: recency above average and the members' mean recency between 90 days and
       half the "never" value -- lapsed buyers rather than never-buyers.
    6. ``new / low activity``: everything else.

    Features that were not clustered on count as average (z = 0).
    """
    if (
        _z(center, "monetary_365d") > _HIGH
        and _z(center, "frequency_365d") > _HIGH
        and _z(center, "recency_days") < 0.0
    ):
        return "high-value loyal"
    if _z(center, "debt_to_income") > 2 * _HIGH or _z(center, "on_time_ratio_12m") < 2 * _LOW:
        return "financially stretched"
    if (
        max(_z(center, "views_30d"), _z(center, "sessions_90d")) > _HIGH
        and _z(center, "frequency_365d") < 0.0
    ):
        return "browses, rarely buys"
    if _z(center, "discount_share_365d") > 2 * _HIGH:
        return "bargain hunters"
    # Raw days rather than a z-score: never-buyers (recency = NEVER_DAYS) inflate the
    # mean, so a lapsed segment's z can sit near 0 on data with many of them.
    if (
        _z(center, "recency_days") > 0.0
        and 90.0 <= raw_means.get("recency_days", NEVER_DAYS) < NEVER_DAYS / 2
    ):
        return "at risk"
    return "new / low activity"


def _unique(names: Sequence[str]) -> list[str]:
    """Suffix repeats with a number ("at risk", "at risk 2") so every name is a key."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def knee_eps(x: np.ndarray, min_samples: int) -> float:
    """DBSCAN ``eps`` at the knee of the sorted k-distance curve (Ester et al., 1996).

    The knee is the point farthest below the chord from the smallest to the largest
    k-distance (the "kneedle" construction): points left of it sit in dense regions, the
    steep tail right of it are outliers.
    """
    nn = NearestNeighbors(n_neighbors=min(min_samples, len(x))).fit(x)
    kdist = np.sort(nn.kneighbors(x)[0][:, -1])
    pos = np.linspace(0.0, 1.0, len(kdist))
    span = kdist[-1] - kdist[0]
    if span <= 0:
        return float(kdist[-1]) or 1e-9
    below_chord = pos - (kdist - kdist[0]) / span
    return float(max(kdist[int(np.argmax(below_chord))], 1e-9))


class Segmenter:
    """Clusters customers on standardised features and names the segments.

    Args:
        method: ``"kmeans"`` (default), ``"dbscan"`` or ``"agglomerative"`` (Ward).
        k: Number of segments; ``None`` picks it by silhouette over 2..8 on a sample of at
            most 5k rows (ignored by DBSCAN, which finds its own).
        features: Feature columns to cluster on (names from the feature registry).
        random_state: Seed of every random draw (samples, K-Means initialisation).

    Learned attributes: ``features_``, ``k_``, ``k_scores_`` (silhouette per k tried),
    ``labels_`` (-1 = unassigned, DBSCAN only), ``centers_`` (standardised space, one row per
    segment), ``names_`` (label -> name), ``profiles_`` (size, share, raw means per label),
    ``eps_`` (DBSCAN).

    DBSCAN and Ward fit on a sample of 10k rows when there are more, and give the other rows
    the nearest segment mean (their memory grows with the square of the rows).
    """

    def __init__(
        self,
        method: str = "kmeans",
        k: int | None = None,
        features: Sequence[str] = DEFAULT_FEATURES,
        random_state: int = 0,
    ):
        self.method = method
        self.k = k
        self.features = features
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"method={self.method!r}: must be one of {METHODS}")
        if self.k is not None and self.k < 2:
            raise UserError(f"k={self.k}: need at least 2 segments, or None to choose it")

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise UserError(
                f"feature columns missing from the frame: {missing}; build them with "
                "ddso.features or pass features= naming columns the frame has"
            )
        raw = frame[list(self.features)].to_numpy(dtype="float64")
        finite = np.isfinite(raw).all(axis=0)
        bad = [f for f, ok in zip(self.features, finite, strict=True) if not ok]
        if bad:
            raise UserError(f"columns {bad} hold NaN or infinite values; fill them first")
        return raw

    def _log(self, raw: np.ndarray) -> np.ndarray:
        x = raw.copy()
        x[:, self._log_mask] = np.log1p(np.clip(x[:, self._log_mask], 0.0, None))
        return x

    def _standardise(self, raw: np.ndarray) -> np.ndarray:
        return (self._log(raw) - self._mean) / self._scale

    def _cluster(self, x: np.ndarray, k: int | None, seed: int) -> np.ndarray:
        """Labels of ``x`` by this segmenter's method; the raw 0..m-1 ids, -1 for noise."""
        rng = np.random.default_rng(seed)
        if self.method == "kmeans":
            return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
        fit_x = x if len(x) <= PAIRWISE_ROWS else x[rng.choice(len(x), PAIRWISE_ROWS, False)]
        if self.method == "agglomerative":
            labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(fit_x)
        else:
            # 2 x dimensions is the usual DBSCAN rule of thumb (Sander et al., 1998).
            min_samples = max(4, 2 * x.shape[1])
            self.eps_ = knee_eps(fit_x, min_samples)
            labels = DBSCAN(eps=self.eps_, min_samples=min_samples).fit_predict(fit_x)
        if fit_x is x:
            return labels
        ids = np.unique(labels[labels >= 0])
        means = np.stack([fit_x[labels == i].mean(axis=0) for i in ids])
        return ids[((x[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1)]

    def _choose_k(self, x: np.ndarray) -> int:
        rng = np.random.default_rng(self.random_state)
        sample = x if len(x) <= SILHOUETTE_ROWS else x[rng.choice(len(x), SILHOUETTE_ROWS, False)]
        self.k_scores_ = {}
        for k in K_RANGE:
            if k >= len(sample):
                break
            labels = self._cluster(sample, k, self.random_state)
            if len(np.unique(labels)) > 1:
                self.k_scores_[k] = float(silhouette_score(sample, labels))
        if not self.k_scores_:
            raise UserError(f"{len(x)} rows: too few to segment; need at least 3")
        return max(self.k_scores_, key=self.k_scores_.__getitem__)

    def fit(self, frame: pd.DataFrame) -> Segmenter:
        """Standardise the features of ``frame``, cluster them and name the segments."""
        self._check_params()
        raw = self._matrix(frame)
        small = len(raw) < SINGLE_THREAD_ROWS
        with threadpool_limits(1) if small else nullcontext():
            return self._fit(raw)

    def _fit(self, raw: np.ndarray) -> Segmenter:
        self.features_ = tuple(self.features)
        self._log_mask = np.array([f in LOG_FEATURES for f in self.features_])
        logged = self._log(raw)
        self._mean = logged.mean(axis=0)
        std = logged.std(axis=0)
        # A constant column carries no information; scale 1 keeps it at 0 instead of NaN.
        self._scale = np.where(std > 0, std, 1.0)
        x = (logged - self._mean) / self._scale

        self.k_scores_ = {}
        k = self.k
        if k is None and self.method != "dbscan":
            k = self._choose_k(x)
        labels = self._cluster(x, k, self.random_state)

        # Largest segment first, so label 0 is the same kind of customer across refits.
        ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
        order = ids[np.argsort(-sizes, kind="stable")]
        # One spare slot at the end, so that noise (-1) indexes it and stays -1.
        remap = np.full(labels.max() + 2, -1)
        remap[order] = np.arange(len(order))
        self.labels_ = remap[labels]
        self.k_ = len(order)
        if self.k_ == 0:
            raise UserError("DBSCAN marked every row as noise; use method='kmeans' or more rows")
        self.centers_ = np.stack([x[self.labels_ == i].mean(axis=0) for i in range(self.k_)])

        self.profiles_ = self._profiles(raw)
        self.names_ = self._names()
        self.profiles_.insert(0, "name", [self.names_[i] for i in self.profiles_.index])
        # Serving constants for assign_one, so that a request does no more than it must.
        self._name_list = [self.names_[i] for i in range(self.k_)]
        self._log_index = np.flatnonzero(self._log_mask).tolist()
        self._inv_scale = 1.0 / self._scale
        self._center_sq = (self.centers_**2).sum(axis=1)
        self._minus_2_centers_t = -2.0 * self.centers_.T
        return self

    def _profiles(self, raw: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(raw, columns=list(self.features_))
        frame["segment"] = self.labels_
        grouped = frame.groupby("segment")
        profiles = grouped.mean()
        profiles.insert(0, "share", grouped.size() / len(frame))
        profiles.insert(0, "size", grouped.size())
        return profiles

    def _names(self) -> dict[int, str]:
        names = [
            name_segment(
                dict(zip(self.features_, self.centers_[i], strict=True)),
                self.profiles_.loc[i, list(self.features_)].to_dict(),
            )
            for i in range(self.k_)
        ]
        out = dict(enumerate(_unique(names)))
        if (self.labels_ == -1).any():
            out[-1] = UNASSIGNED
        return out

    # -- serving -------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "centers_"):
            raise NotFittedError(
                "this Segmenter is not fitted yet; call fit(frame) before assigning customers"
            )

    def assign_one(self, values: Mapping[str, float]) -> tuple[int, str]:
        """Segment label and name of one customer, from a mapping of feature values.

        Nearest centre by squared distance in standardised space, in plain numpy: for
        K-Means this is exactly its own ``predict``; for DBSCAN and Ward it is the nearest
        segment mean (a served customer is never "unassigned").
        """
        self._check_fitted()
        try:
            x = [values[f] for f in self.features_]
        except KeyError:
            missing = [f for f in self.features_ if f not in values]
            raise UserError(f"customer features missing: {missing}") from None
        # Per-item math beats numpy fancy indexing on ten values; max() keeps NaN as NaN.
        for j in self._log_index:
            x[j] = math.log1p(max(x[j], 0.0))
        z = (np.array(x, dtype="float64") - self._mean) * self._inv_scale
        # |z - c|^2 = |z|^2 - 2 z.c + |c|^2, and |z|^2 is the same for every centre.
        scores = self._center_sq + z @ self._minus_2_centers_t
        i = int(scores.argmin())
        if not math.isfinite(scores[i]):
            raise UserError(f"customer features hold NaN or infinite values: {dict(values)}")
        return i, self._name_list[i]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """``frame``'s features in the fitted standardised space (log1p, then z-scores): the
        space the centres live in."""
        self._check_fitted()
        return self._standardise(self._matrix(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Labels of many customers by the nearest centre (the batch twin of assign_one)."""
        d = self.transform(frame)[:, None, :] - self.centers_[None]
        return np.einsum("nkj,nkj->nk", d, d).argmin(axis=1)

    # -- diagnostics ---------------------------------------------------------------------

    def stability(
        self, frame: pd.DataFrame, refits: int = 5, sample: float = 0.8
    ) -> dict[str, float]:
        """How much the segments move when refit on random subsamples of ``frame``.

        Each refit draws ``sample`` of the rows without replacement (duplicated rows would
        add fake density for DBSCAN), fits a copy with another seed and the same ``k_``, and
        is compared with this fit on the rows they share: ``ari_mean`` / ``ari_min`` are the
        adjusted Rand index (1 = identical partition); ``matched_center_shift`` is the mean
        distance, in this fit's standardised space, between centres paired by the Hungarian
        algorithm. ``frame`` should be the frame this segmenter was fitted on.
        """
        self._check_fitted()
        if not 0.0 < sample <= 1.0 or refits < 1:
            raise UserError(f"sample={sample}, refits={refits}: need 0 < sample <= 1, refits >= 1")
        x = self._standardise(self._matrix(frame))
        if len(x) != len(self.labels_):
            raise UserError(
                f"frame has {len(x)} rows, the fit had {len(self.labels_)}; "
                "pass the frame this segmenter was fitted on"
            )
        rng = np.random.default_rng(self.random_state)
        aris, shifts = [], []
        for r in range(refits):
            idx = np.sort(rng.choice(len(x), max(3, int(sample * len(x))), replace=False))
            seed = self.random_state + 1 + r
            k = None if self.method == "dbscan" else self.k_
            refit = Segmenter(self.method, k, self.features_, seed).fit(frame.iloc[idx])
            aris.append(adjusted_rand_score(self.labels_[idx], refit.labels_))
            # Refit centres in *this* fit's space, so that distances are comparable.
            own = x[idx]
            centers = np.stack([own[refit.labels_ == i].mean(axis=0) for i in range(refit.k_)])
            cost = np.linalg.norm(self.centers_[:, None, :] - centers[None], axis=2)
            rows, cols = linear_sum_assignment(cost)
            shifts.append(float(cost[rows, cols].mean()))
        return {
            "ari_mean": float(np.mean(aris)),
            "ari_min": float(np.min(aris)),
            "matched_center_shift": float(np.mean(shifts)),
        }
