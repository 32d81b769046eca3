"""Segmenter on planted archetypes and on a tiny generated dataset."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ddso.data.generator import GeneratorConfig, generate
from ddso.errors import NotFittedError, UserError
from ddso.features import behaviour, financial
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from ddso.models.segmentation import DEFAULT_FEATURES, UNASSIGNED, Segmenter

pytestmark = pytest.mark.unit

# Typical feature values of four archetypes, in DEFAULT_FEATURES order: recency, frequency,
# monetary, views, sessions, cart abandonment, discount share, debt/income, on-time, savings.
ARCHETYPES = {
    "high-value loyal": (5, 30, 3000, 40, 30, 0.2, 0.05, 0.2, 0.99, 0.3),
    "browses, rarely buys": (3650, 0, 0, 200, 80, 0.9, 0.0, 0.3, 0.95, 0.1),
    "at risk": (250, 2, 300, 2, 2, 0.5, 0.1, 0.3, 0.95, 0.15),
    "financially stretched": (30, 5, 500, 20, 10, 0.5, 0.1, 2.5, 0.6, 0.0),
}


def planted(per_group: int = 80, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows around each archetype with ~15% multiplicative noise, and their true group."""
    rng = np.random.default_rng(seed)
    base = np.repeat(np.array(list(ARCHETYPES.values()), dtype=float), per_group, axis=0)
    values = base * rng.lognormal(0.0, 0.15, size=base.shape)
    values[:, 0] = np.minimum(values[:, 0], 3650.0)
    values[:, [5, 6, 8]] = np.clip(values[:, [5, 6, 8]], 0.0, 1.0)
    truth = np.repeat(np.arange(len(ARCHETYPES)), per_group)
    return pd.DataFrame(values, columns=list(DEFAULT_FEATURES)), truth


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    return planted()


@pytest.fixture(scope="module")
def fitted(data) -> Segmenter:
    return Segmenter().fit(data[0])


def test_auto_k_finds_planted_groups(fitted, data):
    from sklearn.metrics import adjusted_rand_score

    assert fitted.k_ == 4
    assert max(fitted.k_scores_, key=fitted.k_scores_.get) == 4
    assert set(fitted.k_scores_) == set(range(2, 9))
    assert adjusted_rand_score(data[1], fitted.labels_) == 1.0
    assert fitted.centers_.shape == (4, len(DEFAULT_FEATURES))


def test_names_are_the_planted_archetypes(fitted):
    assert sorted(fitted.names_.values()) == sorted(ARCHETYPES)


def test_profiles_hold_size_share_and_raw_means(fitted, data):
    p = fitted.profiles_
    assert p["size"].sum() == len(data[0])
    assert p["share"].sum() == pytest.approx(1.0)
    loyal = p[p["name"] == "high-value loyal"].iloc[0]
    assert loyal["monetary_365d"] == pytest.approx(3000, rel=0.1)


def test_assign_one_agrees_with_labels(fitted, data):
    frame = data[0]
    for i, row in enumerate(frame.to_dict("records")):
        label, name = fitted.assign_one(row)
        assert label == fitted.labels_[i]
        assert name == fitted.names_[label]
    np.testing.assert_array_equal(fitted.predict(frame), fitted.labels_)


def test_assign_one_names_missing_features(fitted):
    with pytest.raises(UserError, match="savings_ratio"):
        fitted.assign_one({f: 0.0 for f in DEFAULT_FEATURES if f != "savings_ratio"})


def test_not_fitted_error_says_call_fit(data):
    seg = Segmenter()
    with pytest.raises(NotFittedError, match=r"call fit"):
        seg.assign_one(dict.fromkeys(DEFAULT_FEATURES, 0.0))
    with pytest.raises(NotFittedError, match=r"call fit"):
        seg.stability(data[0])


def test_missing_columns_are_named(data):
    frame = data[0].drop(columns=["views_30d", "debt_to_income"])
    with pytest.raises(UserError, match=r"views_30d.*debt_to_income"):
        Segmenter().fit(frame)


def test_bad_method_is_a_user_error(data):
    with pytest.raises(UserError, match="hdbscan"):
        Segmenter(method="hdbscan").fit(data[0])


def test_dbscan_marks_an_outlier_unassigned(data):
    frame = data[0]
    outlier = pd.DataFrame(
        [(1, 400, 1e6, 5000, 900, 0.0, 0.9, 9.0, 0.0, 5.0)], columns=list(DEFAULT_FEATURES)
    )
    seg = Segmenter(method="dbscan").fit(pd.concat([frame, outlier], ignore_index=True))
    assert seg.labels_[-1] == -1
    assert seg.names_[-1] == UNASSIGNED
    assert seg.k_ == 4
    assert seg.eps_ > 0
    # Nearly all planted rows stay in a segment.
    assert (seg.labels_[:-1] >= 0).mean() > 0.9
    assert -1 in seg.profiles_.index
    label, _ = seg.assign_one(frame.iloc[0].to_dict())
    assert label >= 0


def test_agglomerative_finds_the_same_groups(data, fitted):
    from sklearn.metrics import adjusted_rand_score

    seg = Segmenter(method="agglomerative").fit(data[0])
    assert seg.k_ == 4
    assert adjusted_rand_score(seg.labels_, fitted.labels_) == 1.0
    assert sorted(seg.names_.values()) == sorted(ARCHETYPES)


def test_stability_is_high_on_planted_data(fitted, data):
    result = fitted.stability(data[0], refits=3)
    assert result["ari_mean"] > 0.9
    assert result["ari_min"] > 0.9
    assert 0.0 <= result["matched_center_shift"] < 0.5


def test_deterministic_for_a_random_state(data):
    frame = data[0].sample(frac=1.0, random_state=3)
    a = Segmenter(k=6, random_state=7).fit(frame)
    b = Segmenter(k=6, random_state=7).fit(frame)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.centers_, b.centers_)
    assert a.names_ == b.names_


def test_duplicate_archetypes_get_numbered_names(data):
    seg = Segmenter(k=8).fit(data[0])
    names = list(seg.names_.values())
    assert len(set(names)) == len(names) == 8


def test_fits_a_tiny_generated_dataset(tmp_path):
    out = tmp_path / "d"
    generate(GeneratorConfig(customers=400, days=60, seed=1), out, progress=False)
    as_of = datetime.fromisoformat(json.loads((out / "manifest.json").read_text())["end"])
    as_of = as_of.replace(tzinfo=UTC)
    events = pq.read_table(out / "events", columns=["customer_id", "type", "event_time", "lines"])
    behav = behaviour.customer_features(events, as_of)
    fin = financial.financial_features(pq.read_table(out / "warehouse" / "financial_profiles"))
    # The same merge as pipelines.featurize: customers without events get cold-start values.
    frame = fin.merge(behav, on="customer_id", how="outer")
    defaults = cold_start_features()
    for col in CUSTOMER_FEATURES:
        frame[col] = frame[col].fillna(defaults[col]).astype("float64")

    seg = Segmenter().fit(frame)
    names = list(seg.names_.values())
    assert len(set(names)) == len(names) == seg.k_
    assert 2 <= seg.k_ <= 8
    assert seg.profiles_["size"].sum() == len(frame)
    label, name = seg.assign_one(frame.iloc[0].to_dict())
    assert name == seg.names_[label]


def test_assign_one_rejects_non_finite_values(fitted):
    row = dict.fromkeys(DEFAULT_FEATURES, 1.0)
    for bad in ("recency_days", "on_time_ratio_12m"):
        with pytest.raises(UserError, match="NaN or infinite"):
            fitted.assign_one({**row, bad: float("nan")})
