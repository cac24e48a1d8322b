"""Fixtures for the operator's integration tests: a real operator process per test (the CRD installed first).

Each test's operator watches only the test's namespace, so tests (and the chart's tests) never share one.
"""

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_devcluster.local_operator import LocalOperator, start_local_operator
from modeldeploy_devcluster.testing import wait_until

# pytest runs in importlib mode (pyproject), which puts no test folder on sys.path: the helper module beside this
# file (watching.py) becomes importable here.
sys.path.insert(0, str(Path(__file__).parent))

WAIT_SECONDS = 60
RUNTIME_IMAGE = "modeldeploy/runtime:test"  # the operator's default runtime image in these tests


@pytest.fixture
def start_operator(
    cluster: Any, crd_installed: None, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., LocalOperator]]:
    """Starts operators watching only this test's namespace; stops them after the test."""
    started: list[LocalOperator] = []

    def start(runtime_image: str = RUNTIME_IMAGE, **env: str) -> LocalOperator:
        log = tmp_path / f"operator-{len(started)}.log"
        handle = start_local_operator(
            cluster.kubeconfig, log, [namespace], env=env, extra_args=["--runtime-image", runtime_image]
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def default_runtime_image() -> str:
    return RUNTIME_IMAGE


@pytest.fixture
def operator(start_operator: Callable[..., LocalOperator]) -> LocalOperator:
    return start_operator()


class Kube:
    """Small helpers over the admin kubectl for one test namespace."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def apply(self, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(manifest), check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, "-n", self.namespace, check=check)

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
        return wait_until(predicate, what, timeout=timeout)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        md = self.get("md", name) or {}
        return next((c for c in md.get("status", {}).get("conditions", []) if c["type"] == kind), None)

    def wait_condition(self, name: str, kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            condition = self.condition(name, kind)
            if condition and condition["status"] == status and (reason is None or condition["reason"] == reason):
                return condition
            return None

        return self.wait_for(f"{name} {kind}={status} {reason or ''}", matches)


@pytest.fixture
def kube(cluster: Any, namespace: str) -> Kube:
    return Kube(cluster, namespace)


def model_deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"uri": "file:///models/mlp.pt"}, **spec},
    }


@pytest.fixture
def md() -> Callable[..., dict[str, Any]]:
    return model_deployment
