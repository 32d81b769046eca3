"""XGBoost fitting with Ray Train, and the in-place scorer used by serving.

:func:`fit_with_ray_train` runs ``xgboost.train`` inside Ray Train's ``XGBoostTrainer`` (data
parallel over ``num_workers`` Ray workers, with early stopping on the validation set) and
returns the booster cut at its best iteration. :class:`XGBScorer` wraps a saved booster for
single-row, in-place prediction and per-prediction contributions (for reason codes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

MODEL_FILE = "model.ubj"


def _train_loop(config: dict[str, Any]) -> None:
    import tempfile

    import ray.train

    label = config["label"]
    features = config["features"]
    train_df = ray.train.get_dataset_shard("train").materialize().to_pandas()
    valid_df = ray.train.get_dataset_shard("valid").materialize().to_pandas()
    dtrain = xgb.DMatrix(train_df[features], label=train_df[label], feature_names=features)
    dvalid = xgb.DMatrix(valid_df[features], label=valid_df[label], feature_names=features)
    evals_result: dict = {}
    booster = xgb.train(
        config["params"],
        dtrain,
        num_boost_round=config["num_boost_round"],
        evals=[(dtrain, "train"), (dvalid, "valid")],
        early_stopping_rounds=config["early_stopping_rounds"],
        evals_result=evals_result,
        verbose_eval=False,
    )
    # One report at the end: in Ray Train V2 every report is a round trip to the controller
    # (about 2 s here), so per-iteration reporting would dominate the fit.
    metrics = {f"{d}-{m}": v[-1] for d, ms in evals_result.items() for m, v in ms.items()}
    metrics["best_iteration"] = int(
        booster.attr("best_iteration") or booster.num_boosted_rounds() - 1
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            booster.save_model(f"{tmp}/{MODEL_FILE}")
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def fit_with_ray_train(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    params: dict[str, Any],
    *,
    storage_path: str | Path,
    num_workers: int = 1,
    num_boost_round: int = 400,
    early_stopping_rounds: int = 30,
    run_name: str = "xgboost",
) -> xgb.Booster:
    """Fit a booster with Ray Train and return it cut at the best validation iteration."""
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    cols = [*features, label]
    trainer = XGBoostTrainer(
        _train_loop,
        train_loop_config={
            "label": label,
            "features": features,
            "params": params,
            "num_boost_round": num_boost_round,
            "early_stopping_rounds": early_stopping_rounds,
        },
        scaling_config=ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(Path(storage_path).resolve()), name=run_name),
        datasets={
            "train": ray.data.from_pandas(train[cols]),
            "valid": ray.data.from_pandas(valid[cols]),
        },
    )
    result = trainer.fit()
    booster = xgb.Booster()
    with result.checkpoint.as_directory() as ckpt:
        booster.load_model(f"{ckpt}/{MODEL_FILE}")
    return booster[: result.metrics["best_iteration"] + 1]


class XGBScorer:
    """A saved binary-classification booster, scored one row at a time in place."""

    def __init__(self, model_path: str | Path, features: list[str]):
        self.booster = xgb.Booster()
        self.booster.load_model(str(model_path))
        self.booster.set_param({"nthread": 1})
        self.features = list(features)
        self.used = set(self.booster.get_score(importance_type="weight"))

    def vector(self, values: dict[str, float]) -> np.ndarray:
        """The model's input row, in its feature order (missing names are a bug upstream)."""
        return np.array([[values[f] for f in self.features]], dtype=np.float32)

    def predict(self, row: np.ndarray) -> float:
        return float(self.booster.inplace_predict(row, validate_features=False)[0])

    def contributions(self, row: np.ndarray) -> np.ndarray:
        """SHAP contributions per feature (last element: the bias), in log-odds."""
        dm = xgb.DMatrix(row, feature_names=self.features)
        return self.booster.predict(dm, pred_contribs=True)[0]
