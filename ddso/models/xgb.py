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


def _train_loop(config: dict[str, Any]) -> None:
    import ray.train
    from ray.train.xgboost import RayTrainReportCallback

    label = config["label"]
    features = config["features"]
    train_df = ray.train.get_dataset_shard("train").materialize().to_pandas()
    valid_df = ray.train.get_dataset_shard("valid").materialize().to_pandas()
    dtrain = xgb.DMatrix(train_df[features], label=train_df[label], feature_names=features)
    dvalid = xgb.DMatrix(valid_df[features], label=valid_df[label], feature_names=features)
    xgb.train(
        config["params"],
        dtrain,
        num_boost_round=config["num_boost_round"],
        evals=[(dtrain, "train"), (dvalid, "valid")],
        early_stopping_rounds=config["early_stopping_rounds"],
        verbose_eval=False,
        callbacks=[RayTrainReportCallback(frequency=0, checkpoint_at_end=True)],
    )


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
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

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
    booster = RayTrainReportCallback.get_model(result.checkpoint)
    best = booster.attr("best_iteration")
    return booster[: int(best) + 1] if best is not None else booster


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
