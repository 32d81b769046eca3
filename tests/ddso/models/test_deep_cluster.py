"""Deep clustering on planted clusters, and the outcome-separation measure by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency
from sklearn.metrics import adjusted_rand_score

from ddso.errors import NotFittedError, UserError
from ddso.models.deep_cluster import DeepClusterer, compare, rate_separation

pytestmark = pytest.mark.unit

FEATURES = tuple(f"f{i}" for i in range(8))


def planted(per_group: int = 100, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Four groups around random centres in 8 dimensions, with isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, (4, len(FEATURES)))
    truth = np.repeat(np.arange(4), per_group)
    values = centres[truth] + rng.normal(0.0, 0.5, (len(truth), len(FEATURES)))
    return pd.DataFrame(values, columns=list(FEATURES)), truth


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data):
    return DeepClusterer(k=4, features=FEATURES, embedding_dim=2).fit(data[0])


def test_finds_the_planted_clusters(fitted, data):
    assert adjusted_rand_score(data[1], fitted.labels_) > 0.95
    np.testing.assert_array_equal(fitted.predict(data[0]), fitted.labels_)
    assert fitted.embed(data[0]).shape == (len(data[0]), 2)
    assert fitted.centers_.shape == (4, 2)


def test_early_stopping_keeps_the_best_epoch(fitted):
    assert fitted.n_epochs_ < fitted.max_epochs
    assert fitted.n_epochs_ == fitted.best_epoch_ + 1 + fitted.patience
    best = fitted.val_losses_[fitted.best_epoch_]
    assert best == pytest.approx(min(fitted.val_losses_), rel=1e-3)
    # Reconstruction learned the groups: well below the variance of standardised data (1.0).
    assert best < 0.2


def test_deterministic_for_a_random_state(data, fitted):
    again = DeepClusterer(k=4, features=FEATURES, embedding_dim=2).fit(data[0])
    np.testing.assert_array_equal(again.labels_, fitted.labels_)
    np.testing.assert_array_equal(again.embed(data[0]), fitted.embed(data[0]))


def test_not_fitted_and_bad_arguments(data):
    with pytest.raises(NotFittedError, match="call fit"):
        DeepClusterer(features=FEATURES).predict(data[0])
    with pytest.raises(UserError, match="validation_share=1.5"):
        DeepClusterer(features=FEATURES, validation_share=1.5).fit(data[0])


def test_rate_separation_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    pure = rate_separation(labels, np.array([1, 1, 0, 0, 0, 0]))
    assert pure["separation"] == pytest.approx(1.0)
    assert (pure["min_rate"], pure["max_rate"]) == (0.0, 1.0)
    same = rate_separation(labels, np.array([1, 0, 0, 1, 1, 0]))
    assert same["separation"] == pytest.approx(0.0) and same["p_value"] == pytest.approx(1.0)
    with pytest.raises(UserError, match="0/1"):
        rate_separation(labels, np.array([2, 0, 0, 1, 1, 0]))


def test_rate_separation_is_chi_square_over_n():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 500)
    y = (rng.random(500) < np.array([0.1, 0.2, 0.3, 0.5])[labels]).astype(int)
    table = pd.crosstab(labels, y).to_numpy()
    stat, p, _, _ = chi2_contingency(table, correction=False)
    got = rate_separation(labels, y)
    assert got["separation"] == pytest.approx(stat / 500)
    assert got["p_value"] == pytest.approx(p)


def test_compare_reports_both_spaces_and_both_outcomes(data):
    frame, truth = data
    # Conversion follows the planted groups, churn is noise.
    conversion = (truth == 0).astype(int)
    churn = np.random.default_rng(2).integers(0, 2, len(truth))
    out = compare(frame, conversion, churn, k=4, columns=FEATURES, embedding_dim=2)
    for method in ("kmeans", "deep"):
        m = out[method]
        assert 0.3 < m["silhouette_standardised"] <= 1.0
        assert m["conversion"]["separation"] > 0.9
        assert m["churn"]["separation"] < 0.05
        assert sum(m["segment_shares"]) == pytest.approx(1.0)
    assert out["deep"]["silhouette_embedding"] > out["deep"]["silhouette_standardised"]
    assert out["agreement_ari"] > 0.95
