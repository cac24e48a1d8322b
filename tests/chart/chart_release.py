"""Rendering and installing the chart from tests: `helm template` into objects, releases in the real cluster."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from modeldeploy_devcluster.connection import ClusterConnection

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modeldeploy"
CRD_NAME = "modeldeployments.serving.modeldeploy.dev"
HELM_TIMEOUT_SECONDS = 300
# Fast enough for a test, in the ratios of the defaults (15s / 10s / 2s).
FAST_LEADER_ELECTION = {"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 0.5}


def kubernetes_version() -> str:
    """The control plane's version (devcluster/versions.env), which `helm template` checks kubeVersion against."""
    for line in (REPO / "devcluster" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("devcluster/versions.env names no KUBERNETES_VERSION")


class HelmError(AssertionError):
    """helm failed; the message carries its stderr."""


def run_helm(helm: Path, *args: str, kubeconfig: Path | None = None) -> str:
    argv = [str(helm), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=HELM_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def values_file(values: dict[str, Any], directory: Path) -> Path:
    path = directory / f"values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def render(
    helm: Path,
    values: dict[str, Any],
    work_dir: Path,
    *,
    release: str = "md",
    namespace: str = "modeldeploy-system",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """The objects the chart renders with these values (helm template), in order."""
    output = run_helm(
        helm,
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        kubernetes_version(),
        "--values",
        str(values_file(values, work_dir)),
    )
    return [doc for doc in yaml.safe_load_all(output) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [obj for obj in of_kind(objects, kind) if name is None or obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def container_env(deployment: dict[str, Any]) -> dict[str, Any]:
    """The operator container's env, by name: a plain value, or the valueFrom object."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container.get("env", [])}


@dataclass
class Release:
    """One helm release of the chart in the test cluster."""

    helm: Path
    cluster: ClusterConnection
    name: str
    namespace: str
    work_dir: Path
    installed: bool = False

    @property
    def fullname(self) -> str:
        """The chart's name prefix for this release (the `modeldeploy.fullname` helper)."""
        return self.name if "modeldeploy" in self.name else f"{self.name}-modeldeploy"

    def install(self, values: dict[str, Any], *, chart: Path = CHART) -> str:
        """helm install --wait; returns helm's output, NOTES included."""
        if values.get("crds", {}).get("install", True):
            hand_crd_to(self.cluster, self.name, self.namespace)
        output = self._helm("install", values, chart)
        self.installed = True
        return output

    def upgrade(self, values: dict[str, Any], *, chart: Path = CHART) -> str:
        return self._helm("upgrade", values, chart)

    def uninstall(self) -> None:
        run_helm(
            self.helm,
            "uninstall",
            self.name,
            "--namespace",
            self.namespace,
            "--wait",
            kubeconfig=self.cluster.kubeconfig,
        )
        self.installed = False

    def manifest(self) -> list[dict[str, Any]]:
        """The objects of the deployed revision, as helm recorded them."""
        output = run_helm(
            self.helm, "get", "manifest", self.name, "--namespace", self.namespace, kubeconfig=self.cluster.kubeconfig
        )
        return [doc for doc in yaml.safe_load_all(output) if doc]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        scope = ["--namespace", namespace or self.namespace]
        result = self.cluster.kubectl("get", kind, name, *scope, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def _helm(self, command: str, values: dict[str, Any], chart: Path) -> str:
        return run_helm(
            self.helm,
            command,
            self.name,
            str(chart),
            "--namespace",
            self.namespace,
            "--values",
            str(values_file(values, self.work_dir)),
            "--wait",
            "--timeout",
            "3m",
            kubeconfig=self.cluster.kubeconfig,
        )


def hand_crd_to(cluster: ClusterConnection, release: str, namespace: str) -> None:
    """Let `release` take over an existing CRD, the way Helm documents adopting an object it did not create.

    Other tests (and users who first ran `kubectl apply -f crds/`) create the CRD outside any release; Helm refuses
    to install over an object unless it carries the release's ownership label and annotations.
    """
    if cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode != 0:
        return
    cluster.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")
    cluster.kubectl(
        "annotate",
        "--overwrite",
        "crd",
        CRD_NAME,
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
    )
