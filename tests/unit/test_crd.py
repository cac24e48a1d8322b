"""The CRD in crds/ is rendered from the pydantic models: these keep the two in step and the schema structural."""

from pathlib import Path
from typing import Any

import yaml
from modeldeploy_operator.api import v1alpha1
from modeldeploy_operator.api.crd import CRD_FILE_NAME, render_crd, render_crd_yaml

CRD_PATH = Path(__file__).parents[2] / "crds" / CRD_FILE_NAME


def _schema() -> dict[str, Any]:
    return render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_is_rendered_from_the_models() -> None:
    assert CRD_PATH.read_text() == render_crd_yaml(), "run `make crds` after changing api/v1alpha1.py"


def test_crd_is_well_under_the_object_size_limit() -> None:
    assert len(CRD_PATH.read_bytes()) < 64 * 1024


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += _walk(node[key], f"{path}[{key}]")
    return found


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert "$ref" not in node and "$defs" not in node and "title" not in node, path
        untyped_ok = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or untyped_ok, f"{path} has no type"
        for option in node.get("anyOf", []):
            assert set(option) <= {"type"} and node.get("x-kubernetes-int-or-string"), path


def test_every_spec_field_has_a_description() -> None:
    spec = _schema()["properties"]["spec"]
    for path, node in _walk(spec, "spec"):
        if path.endswith(("[items]", "[additionalProperties]")):
            continue
        assert node.get("description"), f"{path} has no description"


def test_model_fields_and_schema_properties_match() -> None:
    """Every pydantic field is in the schema under its camelCase name, with its default."""

    def check(model: type[v1alpha1.BaseModel], node: dict[str, Any], path: str) -> None:
        properties = node["properties"]
        assert set(properties) == {f.alias or n for n, f in model.model_fields.items()}, path
        required = {f.alias or n for n, f in model.model_fields.items() if f.is_required()}
        assert set(node.get("required", [])) == required, path
        for name, field in model.model_fields.items():
            prop = properties[field.alias or name]
            if not field.is_required() and field.default is not None and not callable(field.default_factory):
                assert prop.get("default") == field.default, f"{path}.{name}"
            annotation = field.annotation
            nested = getattr(annotation, "model_fields", None)
            if nested is not None:
                check(annotation, prop, f"{path}.{name}")  # type: ignore[arg-type]

    check(v1alpha1.ModelDeploymentSpec, _schema()["properties"]["spec"], "spec")
    check(v1alpha1.ModelDeploymentStatus, _schema()["properties"]["status"], "status")


def test_scale_subresource_and_printer_columns() -> None:
    version = render_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Model",
        "GPUs",
        "Ready",
        "Status",
        "URL",
        "Age",
    ]
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert crd["spec"]["names"]["shortNames"] == ["md"]
    assert crd["spec"]["group"] == "serving.modeldeploy.dev"


def test_readme_reference_is_generated_from_the_models() -> None:
    from modeldeploy_operator.api.reference import render_reference

    readme = (CRD_PATH.parents[1] / "README.md").read_text()
    assert render_reference() in readme, "paste `python -m modeldeploy_operator.api.reference` into README.md"
