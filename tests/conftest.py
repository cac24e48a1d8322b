"""Fixtures for every test folder: the local control plane (modeldeploy_devcluster.pytest_plugin) and the CRD."""

from pathlib import Path

import pytest
from modeldeploy_devcluster.connection import ClusterConnection

pytest_plugins = ["modeldeploy_devcluster.pytest_plugin"]

CRD = Path(__file__).parents[1] / "crds" / "modeldeployments.serving.modeldeploy.dev.yaml"


@pytest.fixture(scope="session")
def crd_installed(cluster: ClusterConnection) -> None:
    """The ModelDeployment CRD from crds/, applied outside any Helm release (the chart's tests adopt it)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/modeldeployments.serving.modeldeploy.dev", "--timeout=60s"
    )
