"""Fixtures of the end-to-end tests on the real node: the chart's operator running as a pod (from the image the
tests built), the namespace it watches, and the example model on a PersistentVolume of the node."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.images import LocalImages
from modeldeploy_devcluster.playground import chart_values, install_operator, model_volume, uninstall_operator

# pytest runs in importlib mode, which puts no test folder on sys.path: real_pods.py beside this file becomes
# importable here and in the tests.
sys.path.insert(0, str(Path(__file__).parent))

from real_pods import MODEL_CLAIM, apply, model_deployment

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def e2e_namespace(cluster: ClusterConnection) -> Iterator[str]:
    """A namespace of this session's own (a reused cluster may still be deleting the last session's)."""
    name = f"e2e-real-pods-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def in_cluster_operator(
    cluster: ClusterConnection,
    crd_installed: None,
    local_images: LocalImages,
    e2e_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The chart installed with the locally built operator image: the operator runs as a pod on the real node with
    its ServiceAccount's token, and serves ModelDeployments of its release namespace only (other tests run their own
    operators). Yields the namespace; uninstalled afterwards (the release has cluster-wide roles too)."""
    values = {**chart_values(local_images), "crds": {"install": False}, "watch": {"scope": "release"}}
    release = e2e_namespace
    install_operator(cluster, values, tmp_path_factory.mktemp("e2e-operator"), release=release, namespace=e2e_namespace)
    try:
        yield e2e_namespace
    finally:
        uninstall_operator(cluster, release=release, namespace=e2e_namespace)


@pytest.fixture(scope="session")
def example_model(
    cluster: ClusterConnection, e2e_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The example classifier on a hostPath PersistentVolume of the real node, claimed as `e2e-models`."""
    directory = tmp_path_factory.mktemp("e2e-models")
    directory.chmod(0o755)
    subprocess.run(
        [sys.executable, str(REPO / "examples/models/build_example_model.py"), "--out", str(directory / "iris.pt")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (directory / "iris.pt").chmod(0o644)
    volume, claim = model_volume(MODEL_CLAIM, e2e_namespace, directory)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([volume, claim]))
    try:
        yield directory / "iris.pt"
    finally:
        # PersistentVolumes are cluster-wide and this one is Retain: the namespace's deletion leaves it.
        cluster.kubectl("delete", "pv", volume["metadata"]["name"], "--wait=false", check=False)


@pytest.fixture
def deploy(cluster: ClusterConnection, in_cluster_operator: str) -> Iterator[Callable[..., str]]:
    """deploy(name, **spec) applies a ModelDeployment on the real node (real_pods.model_deployment) in the operator's
    namespace; the test's ModelDeployments are deleted afterwards, so crash-looping ones stop using the node."""
    names: list[str] = []

    def apply_model(name: str, **spec: Any) -> str:
        apply(cluster, model_deployment(name, in_cluster_operator, **spec))
        names.append(name)
        return name

    yield apply_model
    for name in names:
        cluster.kubectl("delete", "md", name, "-n", in_cluster_operator, "--wait=false", check=False)
