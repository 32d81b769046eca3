"""The neural recommenders' training job end to end: Ray Train fits, registry, gate."""

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.integration]


def test_job_trains_registers_and_gates_both_models(ray_session, tmp_path):
    from ddso.data.generator import GeneratorConfig, generate
    from ddso.models.recommend.ncf import NeuralCF
    from ddso.models.recommend.wide_deep import WideDeep
    from ddso.models.registry import ModelRegistry
    from pipelines import train_recommenders

    data = tmp_path / "data"
    generate(GeneratorConfig(customers=3000, days=365, seed=2), data, progress=False)
    args = train_recommenders.Args(data=str(data), registry=str(tmp_path / "registry"),
                                   storage=str(tmp_path / "ray"), epochs=6, patience=2,
                                   json=str(tmp_path / "report.json"))
    report = train_recommenders.main(args)

    assert json.loads((tmp_path / "report.json").read_text())["holdout"] == report["holdout"]
    registry = ModelRegistry(tmp_path / "registry")
    for name, cls in (("ncf", NeuralCF), ("wide_deep", WideDeep)):
        champion = registry.champion(name)
        assert champion.version == report[name]["version"] == "v0001"
        metrics = champion.metadata["metrics"]
        assert 0.0 <= metrics["ndcg10"] <= metrics["hr10"] <= 1.0
        assert 1 <= metrics["best_epochs"] <= args.epochs
        assert champion.metadata["trainer"].startswith("ray.train.torch.TorchTrainer")
        model = cls.load(champion)
        customer = next(iter(model.customers_))
        assert np.isfinite(model.scores(customer)).all()
        assert len(model.recommend(customer, 10)) == 10

    # Again in this process (Ray Train's local mode), same data and seed: the same models, so
    # the gate, comparing with the champions' recorded scores on the same holdout, promotes.
    again = train_recommenders.main(
        train_recommenders.Args(**{**vars(args), "num_workers": 0, "json": None}))
    for name in ("ncf", "wide_deep"):
        assert again[name]["ndcg10"] == report[name]["ndcg10"]
        assert registry.champion(name).version == "v0002"
        last = registry.history(name)[-1]
        assert last["metric"] == "ndcg10" and last["champion_score"] == report[name]["ndcg10"]
