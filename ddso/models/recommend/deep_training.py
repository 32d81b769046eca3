"""Training the neural recommenders: sampled negatives, a validation split by time, early
stopping on validation NDCG@10, and the loop Ray Train's ``TorchTrainer`` runs.

A neural recommender describes a customer at a moment by a *context*: a dict of arrays with
one row per moment (the customer's index; for Wide & Deep also what they had bought before
that moment). Its torch module scores items for contexts: ``module(context, items)`` gives one
logit per (context row, item) for ``items`` of shape (rows, n), and ``module.item_table()``
is the item side of that computation, which the module accepts precomputed (``table=``) so
that serving computes it once. Training shows each positive (an item bought in that context)
with ``negatives`` items drawn uniformly among those the customer never bought in the
training data (implicit feedback: not bought is an unlabelled negative), under binary
cross-entropy.

:func:`fit_with_ray_train` runs :func:`train_loop` in a ``TorchTrainer``:

1. epochs on the ``fit`` examples (the training interactions before an inner cutoff) until
   NDCG@10 on the ``valid`` customers (new items they bought after it) has not improved for
   ``patience`` epochs;
2. with ``refit``, a fresh module (same seed) trains the best number of epochs on the ``full``
   examples (all training interactions), so the latest purchases are learnt too; without it,
   the best epoch's weights are kept.

The loop reports once, at the end, with the weights as a checkpoint and the per-epoch
validation NDCG as ``history``: each report is a round trip to the Ray Train controller
(measured here: ~1.5 s), which per epoch would cost more than an epoch of these models.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ddso.errors import UserError
from ddso.runtime import torch_threads

STATE_FILE = "model.pt"
VALID_K = 10


@dataclass(frozen=True)
class Training:
    """How a neural recommender is trained (shared by :mod:`~ddso.models.recommend.ncf`
    and :mod:`~ddso.models.recommend.wide_deep`).

    ``num_workers=0`` runs the same loop in this process (Ray Train's local mode: no Ray
    session needed); ``storage_path`` None is Ray Train's default (``~/ray_results``).
    """

    epochs: int = 30
    patience: int = 3
    negatives: int = 4
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 0.0
    valid_share: float = 0.1
    max_valid_customers: int = 2000
    refit: bool = True
    seed: int = 0
    num_workers: int = 1
    storage_path: str | None = None
    run_name: str = "neural-recommender"


@dataclass(frozen=True)
class Examples:
    """Positives and the contexts they were bought in.

    ``context`` holds one row per moment; positive ``p`` is item ``item[p]`` bought by customer
    ``customer[p]`` in context row ``row[p]``. ``bought`` (customers x items) is everything
    each customer bought in these interactions: never drawn as a negative.
    """

    context: dict[str, np.ndarray]
    row: np.ndarray
    item: np.ndarray
    customer: np.ndarray
    bought: sp.csr_matrix


@dataclass(frozen=True)
class Validation:
    """Contexts of the validation customers at the inner cutoff, what they owned then
    (excluded from their ranking) and the new items they bought after it (relevant)."""

    context: dict[str, np.ndarray]
    owned: sp.csr_matrix
    relevant: sp.csr_matrix


def sample_negatives(customer: np.ndarray, bought: sp.csr_matrix, k: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``k`` items per entry of ``customer``, uniform among the items that customer never
    bought (rejection sampling: redraw those that hit a bought item)."""
    n_items = bought.shape[1]
    full = np.flatnonzero(bought.getnnz(axis=1) >= n_items)
    if np.isin(customer, full).any():
        raise UserError(f"customer rows {full[:5].tolist()} bought every one of the {n_items} "
                        "items: no negative can be sampled; drop them or add items")
    bought = bought.tocsr()
    bought.sort_indices()
    rows = np.repeat(np.arange(bought.shape[0], dtype=np.int64), np.diff(bought.indptr))
    keys = rows * n_items + bought.indices  # sorted: rows ascend, columns ascend within a row
    out = rng.integers(0, n_items, (len(customer), k))
    redraw = np.ones(out.shape, dtype=bool)
    while redraw.any():
        out[redraw] = rng.integers(0, n_items, int(redraw.sum()))
        key = np.repeat(customer.astype(np.int64), k).reshape(out.shape) * n_items + out
        at = np.minimum(np.searchsorted(keys, key), max(len(keys) - 1, 0))
        redraw = keys[at] == key if len(keys) else np.zeros(out.shape, dtype=bool)
    return out


def ndcg_at_k(scores: torch.Tensor, owned: torch.Tensor, relevant: torch.Tensor,
              k: int = VALID_K) -> torch.Tensor:
    """NDCG@k per row of ``scores`` (rows x items) with ``owned`` items never ranked; the
    same definition as :func:`ddso.models.recommend.evaluate.ndcg`."""
    ranked = scores.masked_fill(owned, float("-inf")).topk(min(k, scores.shape[1]), dim=1)
    hits = relevant.gather(1, ranked.indices).float()
    discount = 1.0 / torch.log2(torch.arange(hits.shape[1], dtype=torch.float32) + 2.0)
    ideal = torch.cumsum(discount, 0)[relevant.sum(1).clamp(1, hits.shape[1]) - 1]
    return (hits * discount).sum(1) / ideal


def as_tensors(context: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Context arrays as tensors: integers (indices) as int64, the rest as float32."""
    return {name: torch.as_tensor(a, dtype=torch.long if a.dtype.kind in "iu" else torch.float32)
            for name, a in context.items()}


def _rows(context: Mapping[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: t[rows] for name, t in context.items()}


@torch.no_grad()
def validation_ndcg(module: torch.nn.Module, valid: Validation, chunk: int = 256) -> float:
    """Mean NDCG@10 of the validation customers, scored in chunks of ``chunk`` rows."""
    module.eval()
    context = as_tensors(valid.context)
    n_rows, n_items = valid.owned.shape
    table = module.item_table()
    items = torch.arange(n_items).expand(min(chunk, n_rows), n_items)
    total = 0.0
    for a in range(0, n_rows, chunk):
        rows = torch.arange(a, min(a + chunk, n_rows))
        scores = module(_rows(context, rows), items[: len(rows)], table=table)
        owned = torch.as_tensor(valid.owned[a : a + chunk].toarray() > 0)
        relevant = torch.as_tensor(valid.relevant[a : a + chunk].toarray() > 0)
        total += float(ndcg_at_k(scores, owned, relevant).sum())
    module.train()
    return total / max(n_rows, 1)


def _epoch(module: torch.nn.Module, optimizer: torch.optim.Optimizer, examples: Examples,
           context: Mapping[str, torch.Tensor], cfg: Training, rng: np.random.Generator,
           rank: int, world: int) -> float:
    """One pass over this worker's share of the positives, each with fresh negatives."""
    order = rng.permutation(len(examples.item))
    order = order[: len(order) - len(order) % world][rank::world]
    negatives = sample_negatives(examples.customer[order], examples.bought, cfg.negatives, rng)
    items = torch.as_tensor(np.c_[examples.item[order], negatives])
    rows = torch.as_tensor(examples.row[order])
    labels = torch.zeros(items.shape)
    labels[:, 0] = 1.0
    loss_fn = torch.nn.BCEWithLogitsLoss()
    total = 0.0
    for a in range(0, len(order), cfg.batch_size):
        logits = module(_rows(context, rows[a : a + cfg.batch_size]), items[a : a + cfg.batch_size])
        loss = loss_fn(logits, labels[a : a + cfg.batch_size])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(logits)
    return total / max(len(order), 1)


def _build(module_class: type[torch.nn.Module], module_config: Mapping[str, Any], cfg: Training,
           world: int) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    """A freshly seeded module, the module to train (DDP-wrapped on several workers), its
    optimiser."""
    torch.manual_seed(cfg.seed)
    module = module_class(**module_config)
    trained = module
    if world > 1:
        import ray.train.torch

        trained = ray.train.torch.prepare_model(module)
    optimizer = torch.optim.Adam(trained.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return module, trained, optimizer


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: early stopping, then refit (module docstring)."""
    # A worker holds one CPU (resources_per_worker); torch's default of a thread per core
    # only contends with the other workers and processes: epochs ran 12x slower on 2 busy
    # cores. Restored after, since local mode (num_workers=0) runs in the caller's process.
    with torch_threads(1):
        _train(config)


def _train(config: dict[str, Any]) -> None:
    import ray.train

    cfg: Training = config["training"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    module, trained, optimizer = _build(config["module_class"], config["module_config"], cfg,
                                        world)
    fit_context = as_tensors(config["fit"].context)
    history, losses, best, best_epochs, best_state = [], [], -1.0, 0, None
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch, rank])
        losses.append(_epoch(trained, optimizer, config["fit"], fit_context, cfg, rng, rank, world))
        history.append(validation_ndcg(module, config["valid"]))
        if history[-1] > best + 1e-6:
            best, best_epochs = history[-1], epoch + 1
            best_state = {k: v.clone() for k, v in module.state_dict().items()}
        elif epoch + 1 - best_epochs >= cfg.patience:
            break
    if cfg.refit:
        module, trained, optimizer = _build(config["module_class"], config["module_config"],
                                            cfg, world)
        full_context = as_tensors(config["full"].context)
        for epoch in range(best_epochs):
            rng = np.random.default_rng([cfg.seed, epoch, rank])
            _epoch(trained, optimizer, config["full"], full_context, cfg, rng, rank, world)
        best_state = module.state_dict()
    metrics = {"valid_ndcg10": best, "best_epochs": best_epochs, "epochs_run": len(history),
               "history": [round(h, 5) for h in history],
               "train_loss": [round(x, 5) for x in losses]}
    checkpoint = None
    if rank == 0:
        folder = tempfile.mkdtemp(prefix="ddso-neural-")
        torch.save(best_state, Path(folder) / STATE_FILE)
        checkpoint = ray.train.Checkpoint.from_directory(folder)
    # Copied into the run's storage, then deleted; in local mode (num_workers=0) the folder
    # itself is the result's checkpoint, which fit_with_ray_train deletes once read.
    ray.train.report(metrics, checkpoint=checkpoint, delete_local_checkpoint_after_upload=True)


def fit_with_ray_train(module_class: type[torch.nn.Module], module_config: Mapping[str, Any],
                       fit: Examples, valid: Validation, full: Examples | None,
                       cfg: Training) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Run :func:`train_loop` in a ``TorchTrainer``; return the state dict and the metrics."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if cfg.refit and full is None:
        raise UserError("Training(refit=True) needs the full examples; pass full=")
    storage = None if cfg.storage_path is None else str(Path(cfg.storage_path).resolve())
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"module_class": module_class, "module_config": dict(module_config),
                           "fit": fit, "valid": valid, "full": full, "training": cfg},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers,
                                     resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=storage, name=cfg.run_name),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
    if cfg.num_workers == 0:  # local mode: the checkpoint is the loop's own temporary folder
        shutil.rmtree(result.checkpoint.path, ignore_errors=True)
    return state, dict(result.metrics)
