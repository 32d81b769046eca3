"""Deep clustering: an autoencoder's embedding clustered by K-Means, against plain K-Means.

:class:`DeepClusterer` standardises the features exactly as :class:`Segmenter` does (it fits
one, which is also the baseline), trains a small fully connected autoencoder on them, and
clusters the bottleneck embedding with K-Means. :func:`compare` fits both on the same rows
and reports, per method:

- ``silhouette``: of K-Means on the standardised features, in that space; of the deep
  clustering both in its own embedding space (what it optimised, and flattering: the
  embedding is trained to be compact) and in the standardised feature space (the same ruler
  as the baseline);
- ``separation`` of each outcome (:func:`rate_separation`): how far the segments' rates of a
  0/1 outcome (conversion, churn) lie apart.

    deep = DeepClusterer(k=5).fit(frame)
    deep.labels_, deep.embed(frame), deep.predict(frame)
    compare(frame, converted, churned, k=5)
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
import torch
from scipy.stats import chi2
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits
from torch import nn

from ddso.errors import NotFittedError, UserError
from ddso.models.segmentation import DEFAULT_FEATURES, SILHOUETTE_ROWS, Segmenter
from ddso.runtime import torch_threads


class _Autoencoder(nn.Module):
    def __init__(self, n_in: int, hidden: Sequence[int], n_embed: int):
        super().__init__()
        sizes = [n_in, *hidden]
        enc: list[nn.Module] = []
        for a, b in pairwise(sizes):
            enc += [nn.Linear(a, b), nn.ELU()]
        self.encoder = nn.Sequential(*enc, nn.Linear(sizes[-1], n_embed))
        back = [n_embed, *reversed(hidden)]
        dec: list[nn.Module] = []
        for a, b in pairwise(back):
            dec += [nn.Linear(a, b), nn.ELU()]
        self.decoder = nn.Sequential(*dec, nn.Linear(back[-1], n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DeepClusterer:
    """K-Means on the embedding of an autoencoder of the standardised features.

    Args:
        k: Number of segments; ``None`` takes the one :class:`Segmenter` picks by silhouette.
        features: Feature columns (names from the feature registry), as for ``Segmenter``.
        embedding_dim: Width of the bottleneck.
        hidden: Widths of the encoder's hidden layers (the decoder mirrors them).
        max_epochs, batch_size, learning_rate: Adam on the mean squared reconstruction error.
        validation_share: Rows held out; training stops when their loss has not improved by
            0.1% for ``patience`` epochs, and the best epoch's weights are kept.
        random_state: Seed of the split, the weights, the batches and K-Means.

    Learned attributes: ``segmenter_`` (the fitted baseline; its standardisation is reused),
    ``k_``, ``labels_``, ``centers_`` (embedding space), ``train_losses_``, ``val_losses_``,
    ``best_epoch_``, ``n_epochs_``.
    """

    def __init__(
        self,
        k: int | None = None,
        features: Sequence[str] = DEFAULT_FEATURES,
        embedding_dim: int = 3,
        hidden: Sequence[int] = (32, 16),
        max_epochs: int = 300,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        validation_share: float = 0.2,
        patience: int = 15,
        random_state: int = 0,
    ):
        self.k = k
        self.features = features
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_share = validation_share
        self.patience = patience
        self.random_state = random_state

    def fit(self, frame: pd.DataFrame) -> DeepClusterer:
        """Standardise, train the autoencoder with early stopping, cluster the embedding."""
        if not 0.0 < self.validation_share < 1.0:
            raise UserError(
                f"validation_share={self.validation_share}: must lie strictly between 0 and 1"
            )
        self.segmenter_ = Segmenter(
            k=self.k, features=self.features, random_state=self.random_state
        ).fit(frame)
        self.k_ = self.segmenter_.k_
        x = self.segmenter_.transform(frame)
        n_val = max(1, int(round(self.validation_share * len(x))))
        if len(x) - n_val < 2:
            raise UserError(f"{len(x)} rows: too few to train an autoencoder; need at least 4")
        gen = torch.Generator().manual_seed(self.random_state)
        order = torch.randperm(len(x), generator=gen)
        data = torch.as_tensor(x, dtype=torch.float32)
        train, val = data[order[n_val:]], data[order[:n_val]]
        # Initial weights come from torch's global generator: seed it without leaking the seed.
        with torch.random.fork_rng():
            torch.manual_seed(self.random_state)
            self.model_ = _Autoencoder(x.shape[1], self.hidden, self.embedding_dim)
        with torch_threads(1):
            self._train(train, val, gen)
            z = self._encode(x)
        # One thread below a few thousand rows, as Segmenter does (OpenMP start-up dominates).
        with threadpool_limits(1):
            km = KMeans(n_clusters=self.k_, n_init=4, random_state=self.random_state).fit(z)
        self.labels_ = km.labels_
        self.centers_ = km.cluster_centers_
        return self

    def _train(self, train: torch.Tensor, val: torch.Tensor, gen: torch.Generator) -> None:
        model = self.model_
        opt = torch.optim.Adam(model.parameters(), lr=self.learning_rate)
        loss_fn = nn.MSELoss()
        best, best_state, waited = float("inf"), None, 0
        self.train_losses_, self.val_losses_ = [], []
        for _epoch in range(self.max_epochs):
            model.train()
            total = 0.0
            for idx in torch.randperm(len(train), generator=gen).split(self.batch_size):
                batch = train[idx]
                opt.zero_grad()
                loss = loss_fn(model(batch), batch)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            model.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(model(val), val))
            self.train_losses_.append(total / len(train))
            self.val_losses_.append(val_loss)
            if val_loss < best * (1 - 1e-3):
                best, waited = val_loss, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
                self.best_epoch_ = len(self.val_losses_) - 1
            else:
                waited += 1
                if waited >= self.patience:
                    break
        self.n_epochs_ = len(self.val_losses_)
        model.load_state_dict(best_state)
        model.eval()

    def _check_fitted(self) -> None:
        if not hasattr(self, "centers_"):
            raise NotFittedError(
                "this DeepClusterer is not fitted yet; call fit(frame) before embedding or "
                "predicting"
            )

    def _encode(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = self.model_.encoder(torch.as_tensor(x, dtype=torch.float32))
        return z.numpy().astype(np.float64)

    def embed(self, frame: pd.DataFrame) -> np.ndarray:
        """The autoencoder's embedding of ``frame``'s rows (rows x ``embedding_dim``)."""
        self._check_fitted()
        return self._encode(self.segmenter_.transform(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Segment of each row: the nearest embedding centre."""
        self._check_fitted()
        d = self.embed(frame)[:, None, :] - self.centers_[None]
        return np.einsum("nkj,nkj->nk", d, d).argmin(axis=1)


def rate_separation(labels: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    """How far apart the segments' rates of a 0/1 outcome lie.

    ``separation`` = ``sum_s n_s (r_s - r)^2 / (n r (1 - r))``: the between-segment variance
    of the rate over the Bernoulli variance of the overall rate ``r``. It is Pearson's
    chi-square of the segments x outcome table divided by ``n`` (Cramer's V squared): 0 when
    every segment has the overall rate, 1 when every segment is all 0 or all 1. ``p_value`` is
    the chi-square test of equal rates (``k - 1`` degrees of freedom); ``min_rate`` and
    ``max_rate`` are the extreme segment rates.
    """
    labels = np.asarray(labels)
    y = np.asarray(outcome, dtype=np.float64)
    if labels.shape != y.shape or not np.isin(y, (0.0, 1.0)).all():
        raise UserError(
            f"outcome must be 0/1 with one value per label; got {y.shape} values "
            f"for {labels.shape} labels"
        )
    ids, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    rates = np.bincount(inverse, weights=y) / sizes
    r = y.mean()
    if r in (0.0, 1.0):
        return {"separation": 0.0, "p_value": 1.0, "min_rate": r, "max_rate": r}
    stat = float((sizes * (rates - r) ** 2).sum() / (r * (1 - r)))
    return {
        "separation": stat / len(y),
        "p_value": float(chi2.sf(stat, len(ids) - 1)) if len(ids) > 1 else 1.0,
        "min_rate": float(rates.min()),
        "max_rate": float(rates.max()),
    }


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    rng = np.random.default_rng(seed)
    idx = np.arange(len(x))
    if len(x) > SILHOUETTE_ROWS:
        idx = np.sort(rng.choice(len(x), SILHOUETTE_ROWS, replace=False))
    if len(np.unique(labels[idx])) < 2:
        return float("nan")
    return float(silhouette_score(x[idx], labels[idx]))


def compare(
    features: pd.DataFrame,
    conversion: np.ndarray,
    churn: np.ndarray,
    k: int,
    columns: Sequence[str] = DEFAULT_FEATURES,
    random_state: int = 0,
    **deep_params,
) -> dict:
    """Plain K-Means and deep clustering on the same rows, side by side (module docstring).

    ``features`` holds the ``columns`` to cluster on; ``conversion`` and ``churn`` are 0/1
    per row; ``deep_params`` go to :class:`DeepClusterer`.

    Returns ``{"kmeans": {...}, "deep": {...}, "agreement_ari": float}``; each method holds
    ``silhouette_standardised``, (deep only) ``silhouette_embedding``, ``segment_shares``, and
    ``conversion`` / ``churn`` as returned by :func:`rate_separation`. Silhouettes use at most
    5,000 rows, sampled with ``random_state``.
    """
    deep = DeepClusterer(k, columns, random_state=random_state, **deep_params).fit(features)
    base = deep.segmenter_
    x = base.transform(features)
    out = {}
    for name, labels in (("kmeans", base.labels_), ("deep", deep.labels_)):
        out[name] = {
            "silhouette_standardised": _silhouette(x, labels, random_state),
            "segment_shares": sorted(
                (np.bincount(labels) / len(labels)).round(4).tolist(), reverse=True
            ),
            "conversion": rate_separation(labels, conversion),
            "churn": rate_separation(labels, churn),
        }
    out["deep"]["silhouette_embedding"] = _silhouette(
        deep.embed(features), deep.labels_, random_state
    )
    out["deep"]["epochs"] = deep.n_epochs_
    out["agreement_ari"] = float(adjusted_rand_score(base.labels_, deep.labels_))
    return out
