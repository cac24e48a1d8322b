"""The managedFields entry the apiserver records for our server-side apply of a manifest, for fakes of KubeApi.

Which lists are keyed by what, and which maps and lists are owned whole, follows the Kubernetes OpenAPI schema of
the fields our builders set; test_drift.py checks the result against what the real apiserver recorded."""

import json
from typing import Any

from modeldeploy_operator.manifests.labels import FIELD_MANAGER

_ATOMIC = frozenset(
    {
        "selector",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "resourceFieldRef",
        "command",
        "args",
        "tolerations",
        "drop",
        "podSelector",
        "ingress",
        "egress",
        "policyTypes",
    }
)
_LIST_KEYS = {"volumeMounts": ("mountPath",), "ownerReferences": ("uid",)}


def _fields(value: Any, name: str = "") -> dict[str, Any]:
    if name in _ATOMIC or not isinstance(value, dict | list):
        return {}
    if isinstance(value, dict):
        return {f"f:{key}": _fields(item, key) for key, item in value.items()}
    entries = {}
    for item in value:
        if name == "ports":
            keys = ("port", "protocol") if "port" in item else ("containerPort", "protocol")
        else:
            keys = _LIST_KEYS.get(name, ("name",))
        key = "k:" + json.dumps({field: item[field] for field in keys}, sort_keys=True, separators=(",", ":"))
        entries[key] = {} if name == "ownerReferences" else {".": {}, **_fields(item)}
    return entries


def applied_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """The FieldsV1 our field manager owns right after applying `manifest`."""
    metadata = {key: value for key, value in manifest["metadata"].items() if key in ("labels", "annotations")}
    metadata["ownerReferences"] = manifest["metadata"].get("ownerReferences", [])
    return {"f:metadata": _fields(metadata), "f:spec": _fields(manifest.get("spec") or {})}


def as_applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` as the apiserver answers our apply of it: with our managedFields entry."""
    entry = {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": applied_fields(manifest)}
    return {**manifest, "metadata": {**manifest["metadata"], "managedFields": [entry]}}
