"""Renders the ModelDeployment CRD from the pydantic models in v1alpha1.

pydantic's JSON schema is close to, but not, a Kubernetes structural schema: it uses $refs, expresses optional
fields as anyOf-with-null and carries titles. This module inlines the refs and strips what the apiserver rejects;
everything else (types, bounds, patterns, enums, defaults, descriptions, CEL rules) comes from the models.

    python -m modeldeploy_operator.api.crd > crds/modeldeployments.serving.modeldeploy.dev.yaml
"""

import sys
from typing import Any

import yaml

from modeldeploy_operator.api import v1alpha1

CRD_FILE_NAME = f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}.yaml"

_NAME_RULE = v1alpha1.cel(
    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63",
    "metadata.name must be a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a "
    "letter (it names the Deployment, the Service and the Pods' labels)",
)


def _structural(node: Any, definitions: dict[str, Any]) -> Any:
    """Inline $refs, collapse Optional's anyOf-with-null, drop titles, recursively."""
    if isinstance(node, list):
        return [_structural(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.get("anyOf")
    if any_of and {"type": "null"} in any_of:
        rest = [option for option in any_of if option != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1:
            node = {**rest[0], **node}
        else:
            node["anyOf"] = rest
    if "$ref" in node:
        target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
        # Sibling keys (a field's description, default, rules) win over the referenced model's.
        node = {**target, **node}
    if node.get("default", ...) is None:
        node.pop("default")
    node.pop("title", None)
    return {key: _structural(value, definitions) for key, value in node.items()}


def openapi_schema(model: type[v1alpha1.BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {}))


def _with_object_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Models become 'type: object' nodes, as structural schemas require of every node."""
    if "properties" in schema or "additionalProperties" in schema:
        schema.setdefault("type", "object")
    for key in ("properties",):
        for child in schema.get(key, {}).values():
            _with_object_types(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _with_object_types(schema[key])
    if schema.get("additionalProperties") is False:
        schema.pop("additionalProperties")
    return schema


def render_crd() -> dict[str, Any]:
    spec_schema = _with_object_types(openapi_schema(v1alpha1.ModelDeploymentSpec))
    status_schema = _with_object_types(openapi_schema(v1alpha1.ModelDeploymentStatus))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modeldeploy"},
        },
        "spec": {
            "group": v1alpha1.GROUP,
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.SINGULAR,
                "shortNames": list(v1alpha1.SHORT_NAMES),
                "categories": ["all", "modeldeploy"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Model", "type": "string", "jsonPath": ".status.modelName"},
                        {"name": "GPUs", "type": "integer", "jsonPath": ".spec.gpu.count"},
                        {"name": "Ready", "type": "string", "jsonPath": ".status.readySummary"},
                        {
                            "name": "Status",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model served by the modeldeploy runtime on GPU (or CPU) nodes: "
                            "one Deployment and one Service, kept as declared, with an honest status.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            "x-kubernetes-validations": [_NAME_RULE],
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated from operator/modeldeploy_operator/api/v1alpha1.py by `make crds`; do not edit.\n"
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render_crd_yaml())
