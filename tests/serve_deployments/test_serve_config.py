"""serve_config.yaml is a valid Serve config whose args validate as AppArgs."""

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_deployments.app import AppArgs, Assessment, DecisionIngress

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"


def test_serve_config_validates():
    raw = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.import_path == "serve_deployments.app:build_app"
    args = AppArgs.model_validate(app.args)
    assert 0.0 <= args.epsilon <= 1.0
    names = {d.name for d in app.deployments}
    assert names == {DecisionIngress.name, Assessment.name}
    for d in app.deployments:
        assert d.max_queued_requests > 0
