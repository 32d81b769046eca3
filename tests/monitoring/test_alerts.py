"""The alert rules (``monitoring/alerts.yaml``) parse, are complete, and name only series the
code exports, so a renamed metric cannot leave a rule silently matching nothing."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ddso.models.registry import ModelRegistry
from ddso.monitoring import DriftReference
from ddso.stream import BatchStats
from ddso.stream_health import StreamMonitor
from serve_deployments.metrics import ApiMetrics

pytestmark = pytest.mark.unit

RULES = Path(__file__).resolve().parents[2] / "monitoring" / "alerts.yaml"
SEVERITIES = {"info", "warning", "critical"}


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["kind"] == "PrometheusRule"
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


class _NoSource:
    """A source that owns no partition (lag is measured against none)."""


def _exported(tmp_path) -> set[str]:
    """Every sample name the API replicas and a stream consumer export, once each is fed."""
    api = ApiMetrics()
    registry = ModelRegistry(tmp_path / "registry")
    frame = pd.DataFrame({"a": np.arange(100.0)})
    model = tmp_path / "model.ubj"
    model.write_bytes(b"not a real model: only its registration is read")
    reference = DriftReference.fit(frame).save(tmp_path / "drift_reference.json")
    registry.register("propensity", {"model.ubj": model, "drift_reference.json": reference},
                      {"features": ["a"]})
    assert api.watch_models(registry, ("propensity",), drift_of="propensity").startswith("on")
    api.drift.min_observations = 0
    api.drift.update({"a": 1.0})
    api.decision("email", "P1", False)
    api.scored({"propensity": 0.1, "health_score": 600.0}, {"a": 1.0}, False, False)
    api.observe("/v1/decide", "POST", 200, 0.01)
    api.stream_health = lambda: {"seconds_since_last_batch": 1.0}

    stream = StreamMonitor("g-0", _NoSource(), None, source_kind="local_log")
    stream.batch(BatchStats(received=2, applied=1, dead_letters=1, late=0,
                            freshness_ms=[5.0], dead_reasons={"bad_json": 1},
                            newest_event_s=1.0))
    stream.lag_gauge.labels("ddso.events-0").set(0)
    names = set()
    for reg in (api.registry, stream.registry):
        for metric in reg.collect():
            names.update(sample.name for sample in metric.samples)
    return names


def test_every_rule_is_complete():
    rules = _rules()
    assert len(rules) >= 10
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_rules_name_only_exported_series(tmp_path):
    exported = _exported(tmp_path)
    referenced = {name for rule in _rules()
                  for name in re.findall(r"\bddso_[a-z0-9_]+", rule["expr"])}
    assert referenced, "no ddso_* series in the rules"
    missing = sorted(referenced - exported)
    assert not missing, f"rules name series no registry exports: {missing}"


def test_the_documented_thresholds_are_the_rules():
    exprs = {r["alert"]: " ".join(r["expr"].split()) for r in _rules()}
    assert exprs["DdsoDecideLatencyP99High"].endswith("> 0.030")
    assert exprs["DdsoFeatureDriftSignificant"].endswith("> 0.25")
    assert exprs["DdsoFeatureDriftModerate"].endswith("> 0.1")
    assert exprs["DdsoIngestionDelayP99High"].endswith("> 1")
    assert exprs["DdsoModelStale"].endswith("> 30 * 86400")
