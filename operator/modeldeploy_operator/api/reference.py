"""The resource reference (every spec field: type, default, description) as a Markdown table, from the CRD.

    python -m modeldeploy_operator.api.reference

README.md carries its output; a test keeps the two in step.
"""

import json
import sys
from typing import Any

from modeldeploy_operator.api.crd import render_crd


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "count or percentage" if node.get("pattern", "").endswith("%$") else "quantity"
    if node.get("enum"):
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    kind = node.get("type", "object")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and "additionalProperties" in node:
        return f"map of {_type(node['additionalProperties'])}"
    return str(kind)


def _rows(node: dict[str, Any], path: str) -> list[str]:
    rows = []
    for name, child in node.get("properties", {}).items():
        field = f"{path}.{name}"
        default = f"`{json.dumps(child['default'])}`" if "default" in child and child["default"] != {} else ""
        description = " ".join(child.get("description", "").split()).replace("|", "\\|")
        rows.append(f"| `{field}` | {_type(child)} | {default} | {description} |")
        item = child.get("items", {})
        rows += _rows(child, field) + (_rows(item, f"{field}[]") if "properties" in item else [])
    return rows


def render_reference() -> str:
    schema = render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    header = ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
    return "\n".join(header + _rows(schema["properties"]["spec"], "spec")) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
