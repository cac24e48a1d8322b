"""ModelDeployments from the examples, applied and watched through the admin kubectl."""

from __future__ import annotations

import json
from typing import Any

import yaml
from chart_release import REPO
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.testing import wait_until

MODELS = REPO / "examples" / "gitops" / "models"
READY_TIMEOUT_SECONDS = 90.0


def example(name: str, **spec_changes: Any) -> dict[str, Any]:
    """An example ModelDeployment (examples/gitops/models/NAME.yaml), with top-level spec fields replaced."""
    manifest: dict[str, Any] = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    manifest["spec"].update(spec_changes)
    return manifest


def apply(cluster: ClusterConnection, manifest: dict[str, Any], namespace: str) -> None:
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def get_md(cluster: ClusterConnection, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "modeldeployment", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(md: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    conditions = ((md or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def wait_condition(
    cluster: ClusterConnection, namespace: str, name: str, kind: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    """Wait until the ModelDeployment's condition `kind` has this status (and reason); return the object."""

    def reached() -> dict[str, Any] | None:
        md = get_md(cluster, namespace, name)
        found = condition(md, kind)
        if found.get("status") == status and reason in (None, found.get("reason")):
            return md
        return None

    what = f"{kind}={status}{f' ({reason})' if reason else ''} on {namespace}/{name}"
    md: dict[str, Any] = wait_until(reached, what, timeout=READY_TIMEOUT_SECONDS)
    return md
