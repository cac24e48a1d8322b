"""Fixtures for every test folder: the local control plane (modeldeploy_devcluster.pytest_plugin), the CRD, and
the health verdicts GitOps tools give ModelDeployments."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from modeldeploy_devcluster.connection import ClusterConnection

pytest_plugins = ["modeldeploy_devcluster.pytest_plugin"]

REPO = Path(__file__).parents[1]
CRD = REPO / "crds" / "modeldeployments.serving.modeldeploy.dev.yaml"
HEALTHCHECK_BUILD = REPO / "tests" / "chart" / "healthcheck" / "build.sh"
ARGOCD_HEALTH = REPO / "examples" / "gitops" / "argocd" / "argocd-cm-health.yaml"
ARGOCD_HEALTH_KEY = "resource.customizations.health.serving.modeldeploy.dev_ModelDeployment"


@pytest.fixture(scope="session")
def crd_installed(cluster: ClusterConnection) -> None:
    """The ModelDeployment CRD from crds/, applied outside any Helm release (the chart's tests adopt it)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/modeldeployments.serving.modeldeploy.dev", "--timeout=60s"
    )


class HealthCheck:
    """Health verdicts from the tools' own code, built by tests/chart/healthcheck/build.sh from the Go module proxy:
    kstatus (sigs.k8s.io/cli-utils, what Flux and kpt use) and the Argo CD health script of examples/gitops/argocd
    run by gopher-lua (the Lua VM Argo CD embeds), the object passed as Argo CD passes it."""

    def __init__(self, binary: Path, argocd_script: Path) -> None:
        self.binary = binary
        self.argocd_script = argocd_script

    def verdicts(self, objects: str, tool: str) -> dict[str, dict[str, str]]:
        """`tool` ("kstatus" or "argocd") on a JSON List of objects: verdicts by object name."""
        command = [str(self.binary), tool] + ([str(self.argocd_script)] if tool == "argocd" else [])
        result = subprocess.run(command, input=objects, capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode == 0, result.stderr
        return {verdict["name"]: verdict for verdict in json.loads(result.stdout)}


@pytest.fixture(scope="session")
def health(tmp_path_factory: pytest.TempPathFactory) -> HealthCheck:
    built = subprocess.run([str(HEALTHCHECK_BUILD)], stdout=subprocess.PIPE, text=True, check=True, timeout=900)
    script = tmp_path_factory.mktemp("argocd") / "health.lua"
    script.write_text(yaml.safe_load(ARGOCD_HEALTH.read_text())["data"][ARGOCD_HEALTH_KEY])
    return HealthCheck(Path(built.stdout.strip().splitlines()[-1]), script)
