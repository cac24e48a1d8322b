"""Fixtures of the chart's tests: helm, a release per test, and operator processes with the chart's identity."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from modeldeploy_devcluster.binaries import ensure_binaries
from modeldeploy_devcluster.connection import ClusterConnection

# pytest runs in importlib mode (pyproject), which puts no test folder on sys.path: the helper modules beside
# this file (chart_*.py, unique names) become importable here.
sys.path.insert(0, str(Path(__file__).parent))

from chart_operator import OperatorProcess, OperatorStarter, start_operator
from chart_release import Release


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_binaries() / "helm"


@pytest.fixture
def release(helm: Path, cluster: ClusterConnection, namespace: str, tmp_path: Path) -> Iterator[Release]:
    """A release of the chart in the test's namespace (not installed yet); uninstalled after the test."""
    handle = Release(helm, cluster, name=f"md-{uuid.uuid4().hex[:6]}", namespace=namespace, work_dir=tmp_path)
    yield handle
    if handle.installed:
        handle.uninstall()


@pytest.fixture
def run_operator(tmp_path: Path) -> Iterator[OperatorStarter]:
    """Starts operator processes (kubeconfig, environment, namespaces); stops them all after the test."""
    started: list[OperatorProcess] = []

    def start(kubeconfig: Path, env: dict[str, str], namespaces: list[str]) -> OperatorProcess:
        handle = start_operator(kubeconfig, env, namespaces, tmp_path / f"operator-{len(started)}.log")
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
