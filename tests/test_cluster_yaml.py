"""``cluster.yaml`` is a RayService the Kubernetes API server would accept, as ddso expects it.

The KubeRay CRD's OpenAPI v3 schema is checked with jsonschema (which ignores the ``x-kubernetes-*``
keywords and ``format: int32``). The API server would also silently prune unknown fields, so a
misspelt key would vanish instead of failing: :func:`_unknown_fields` makes that an error.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from ddso.config import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "cluster.yaml"
CRD = ROOT.parent / "shared" / "kuberay" / "ray.io_rayservices.yaml"


def _load(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    crd = _load(CRD.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return _load(MANIFEST.read_text())


def _unknown_fields(doc: Any, schema: dict[str, Any], where: str = "") -> Iterator[str]:
    """Paths of keys the API server would prune: not in a closed object's ``properties``."""
    if isinstance(doc, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        for key, value in doc.items():
            if properties is not None and key in properties:
                yield from _unknown_fields(value, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                yield from _unknown_fields(value, extra, f"{where}.{key}")
            elif properties is not None and extra is None:
                yield f"{where}.{key}"
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(doc):
            yield from _unknown_fields(item, schema["items"], f"{where}[{i}]")


def _problems(doc: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    return errors + [f"{path}: unknown field" for path in _unknown_fields(doc, schema)]


def _containers(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        yield from group["template"]["spec"]["containers"]


def _serve_config(manifest: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


def test_manifest_is_a_valid_rayservice(manifest, schema):
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    assert _problems(manifest, schema) == []


@pytest.mark.parametrize(("good", "bad"), [
    ("enableInTreeAutoscaling:", "enableInTreeAutoscalling:"),  # under rayClusterConfig
    ("readinessProbe:", "readinesProbe:"),  # deep inside a pod template
    ("serveConfigV2:", "serveConfig:"),  # the v1alpha1 name
])
def test_a_misspelt_field_fails(schema, good, bad):
    text = MANIFEST.read_text()
    assert good in text
    problems = _problems(_load(text.replace(good, bad, 1)), schema)
    assert any(bad.rstrip(":") in p and "unknown field" in p for p in problems), problems


def test_a_wrongly_typed_value_fails(manifest, schema):
    broken = copy.deepcopy(manifest)
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "one"
    assert any("minReplicas" in p for p in _problems(broken, schema))


def test_the_walker_descends_into_maps_and_lists():
    schema = {"type": "object", "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"a": {}}},
    }}
    doc = {"labels": {"anything": "x"}, "items": [{"a": 1}, {"b": 2}], "free": {"z": 1}}
    assert list(_unknown_fields(doc, schema)) == [".items[1].b"]


def test_serve_config_deploys_the_ddso_app(manifest):
    config = _serve_config(manifest)
    (app,) = config["applications"]
    assert app["import_path"] == "serve_deployments.app:build_app"
    assert app["route_prefix"] == "/"
    assert isinstance(app["args"], dict)
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == {"DecisionIngress", "Assessment"}
    for name, deployment in deployments.items():
        scaling = deployment["autoscaling_config"]
        assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"], name
        assert scaling["target_ongoing_requests"] <= deployment["max_ongoing_requests"], name


def test_serve_args_are_the_app_args(manifest):
    from serve_deployments.app import AppArgs  # imports Ray Serve, starts nothing

    (app,) = _serve_config(manifest)["applications"]
    args = AppArgs.model_validate(app["args"])
    (container, *_) = _containers(manifest)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert args.registry == env["DDSO_REGISTRY_URI"]  # serving reads what training writes


def test_ray_version_and_autoscaling_match_the_project(manifest):
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray_pin,) = [p for p in pins if p.startswith("ray[")]
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray_pin.split("==")[1]
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_every_container_has_resources_probes_and_the_settings(manifest):
    for container in _containers(manifest):
        resources = container["resources"]
        assert resources["requests"] and resources["limits"], container["name"]
        assert "readinessProbe" in container and "livenessProbe" in container
        names = {e["name"] for e in container["env"]}
        assert {"DDSO_KAFKA__BOOTSTRAP_SERVERS", "DDSO_REDIS__URL", "DDSO_REGISTRY_URI",
                "DDSO_PII_KEY"} <= names
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/var/lib/ddso" in mounts, container["name"]
        (pii,) = [e for e in container["env"] if e["name"] == "DDSO_PII_KEY"]
        assert "secretKeyRef" in pii["valueFrom"] and "value" not in pii


def _is_setting(variable: str) -> bool:
    """Whether ``variable`` names a setting: ``DDSO_<FIELD>`` or ``DDSO_<SECTION>__<KEY>``."""
    top, _, sub = variable.removeprefix(ENV_PREFIX).lower().partition("__")
    field = Settings.model_fields.get(top)
    if field is None:
        return False
    section = field.annotation
    is_section = isinstance(section, type) and issubclass(section, BaseModel)
    return sub in section.model_fields if is_section else not sub


def test_env_names_are_ddso_settings(manifest):
    names = {e["name"] for c in _containers(manifest) for e in c["env"]}
    ddso_names = {n for n in names if n.startswith(ENV_PREFIX)}
    assert ddso_names
    assert [n for n in ddso_names if not _is_setting(n)] == []
    assert not _is_setting("DDSO_REDIS__URI") and not _is_setting("DDSO_KAFKA")
