"""A decision service's inputs built without Ray, for in-process tests: the served feature
snapshot of a generated dataset and a small propensity model."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import xgboost as xgb

from ddso.features.financial import financial_features
from ddso.features.sets import CUSTOMER_FEATURES, cold_start_features
from ddso.models.registry import ModelRegistry

FINANCIAL_PROFILE = {
    "customer_id": "C-assess-1",
    "as_of": "2025-06-30T00:00:00Z",
    "income_streams": [
        {"kind": "salary", "monthly_amount": 3200.0, "months_observed": 24, "stability": 0.9}
    ],
    "debts": [
        {"kind": "credit_card", "balance": 1500.0, "monthly_payment": 90.0, "credit_limit": 5000.0}
    ],
    "savings_balance": 4000.0,
    "payments_due_12m": 12,
    "payments_on_time_12m": 11,
    "delinquencies_24m": 0,
}
"""A valid financial profile (the body of ``POST /v1/assess``'s ``profile``)."""


def snapshot(data, path) -> list[str]:
    """Served features without Ray: the profiles' financial features, cold-start behaviour
    with some contact history, and the customers' facts."""
    fin = financial_features(pq.read_table(data / "warehouse" / "financial_profiles"))
    rng = np.random.default_rng(0)
    for name, value in cold_start_features().items():
        if name not in fin.columns:
            fin[name] = value
    fin["days_since_last_contact"] = rng.integers(0, 60, len(fin)).astype(float)
    customers = pd.read_parquet(data / "warehouse" / "customers")
    facts = ["customer_id", "birth_year", "preferred_channel", "consent_email", "consent_sms",
             "consent_call", "consent_app_push"]
    fin.merge(customers[facts], on="customer_id").to_parquet(path, index=False)
    return fin["customer_id"].tolist()


def register_propensity(registry: ModelRegistry, folder) -> None:
    """A small propensity model, plain XGBoost (the serving path only reads its artifact)."""
    rng = np.random.default_rng(1)
    x = rng.random((400, len(CUSTOMER_FEATURES)))
    y = (x[:, 0] + rng.normal(0, 0.3, 400) > 0.5).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(x, label=y, feature_names=list(CUSTOMER_FEATURES)), 10)
    booster.save_model(folder / "model.ubj")
    registry.register("propensity", {"model.ubj": folder / "model.ubj"},
                      {"features": list(CUSTOMER_FEATURES)})


def register_wide_deep(registry: ModelRegistry, warehouse, folder) -> str:
    """A small Wide & Deep champion fitted on the warehouse's sales in this process (the
    serving path only loads it; ``pipelines.train_recommenders`` is tested on its own)."""
    from ddso.models.recommend.deep_training import Training
    from ddso.models.recommend.served import warehouse_interactions
    from ddso.models.recommend.wide_deep import WideDeep

    model = WideDeep(dim=8, hidden=(16, 8), training=Training(
        epochs=4, patience=2, negatives=2, batch_size=512, num_workers=0, seed=1))
    model.fit(warehouse_interactions(warehouse), pd.read_parquet(warehouse / "products"))
    version = registry.register("wide_deep", model.save(folder / "wide_deep"), {})
    return f"wide_deep:{version.version}"
