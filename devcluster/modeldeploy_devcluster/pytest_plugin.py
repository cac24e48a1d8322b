"""Pytest fixtures for the local control plane: `cluster` (one per session), `namespace` (one per test) and
`local_images` (the project's images, built and imported into the real node once per session).

Register it with `pytest_plugins = ["modeldeploy_devcluster.pytest_plugin"]`. The cluster starts only
when the first test that needs it runs, so test runs that need no cluster pay nothing. Set
MODELDEPLOY_TEST_KUBECONFIG to a running cluster's kubeconfig (`make cluster-up`) to reuse it: faster
iteration, and nothing is stopped at the end.

A machine has room for one real node. Tests marked `own_real_node` start a cluster of their own with it (the
playground): they run first, before the session's cluster takes the real node.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from . import images
from .binaries import ensure_binaries
from .cluster import LocalCluster
from .connection import ClusterConnection
from .images import LocalImages

EXISTING_CLUSTER_ENV = "MODELDEPLOY_TEST_KUBECONFIG"
CLUSTER_MARKER = "cluster"
OWN_REAL_NODE_MARKER = "own_real_node"
TEST_NAMESPACE_LABEL = "devcluster.modeldeploy.dev/test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{OWN_REAL_NODE_MARKER}: starts its own cluster with the machine's real node (runs first)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the cluster, so `-m "not cluster"` selects the rest; run `own_real_node` tests
    before any test that starts the session's cluster."""
    for item in items:
        if CLUSTER_MARKER in getattr(item, "fixturenames", ()):
            item.add_marker(CLUSTER_MARKER)
    items.sort(key=lambda item: item.get_closest_marker(OWN_REAL_NODE_MARKER) is None)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConnection]:
    """A running control plane with the default nodes: 2 simulated GPU nodes of 8 GPUs, 1 simulated CPU node and
    the real node."""
    existing = os.environ.get(EXISTING_CLUSTER_ENV)
    if existing:
        yield ClusterConnection(
            kubeconfig=Path(existing).resolve(),
            bin_dir=ensure_binaries(),
            work_dir=tmp_path_factory.mktemp("service-accounts"),
        )
        return
    local = LocalCluster(tmp_path_factory.mktemp("devcluster") / "cluster")
    connection = local.start()
    try:
        yield connection
    finally:
        local.down()


@pytest.fixture(scope="session")
def local_images(cluster: ClusterConnection) -> LocalImages:
    """The runtime and operator images built from the project's Dockerfiles (cached by their inputs), imported
    into the cluster's real node. Pods refer to them by these names with imagePullPolicy IfNotPresent."""
    runtime, operator = images.build_all()
    if not LocalCluster(cluster.kubeconfig.parent).import_images([runtime, operator]):
        raise RuntimeError(f"no real node runs in the cluster of {cluster.kubeconfig}: start it with the real node")
    return LocalImages(runtime=runtime.reference, operator=operator.reference)


def _namespace_name(test_name: str) -> str:
    """A valid, unique namespace name that still tells which test made it."""
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(cluster: ClusterConnection, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (its pods go with it)."""
    name = _namespace_name(request.node.name)
    client = cluster.client()
    client.create(Namespace(metadata=ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"})))
    try:
        yield name
    finally:
        try:
            client.delete(Namespace, name)
        except ApiError as error:
            if error.status.code != 404:
                raise
