"""Fixtures for the operator's integration tests: the CRD installed, and a real operator process per test.

Each test's operator watches only the test's namespace, so tests (and the chart's tests) never share one.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).parents[2]
CRD = REPO / "crds" / "modeldeployments.serving.modeldeploy.dev.yaml"
WAIT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def crd_installed(cluster: Any) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/modeldeployments.serving.modeldeploy.dev", "--timeout=60s"
    )


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    metrics_port: int
    health_port: int
    log: Path

    def metric(self, name: str, **labels: str) -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_operator(
    cluster: Any, crd_installed: None, namespace: str, tmp_path: Path
) -> Iterator[Callable[[], OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        health, metrics = free_port(), free_port()
        log = tmp_path / f"operator-{len(started)}.log"
        command = [
            sys.executable,
            "-m",
            "modeldeploy_operator",
            "--namespace",
            namespace,
            "--bind-address",
            "127.0.0.1",
            "--health-port",
            str(health),
            "--metrics-port",
            str(metrics),
            "--runtime-image",
            "modeldeploy/runtime:test",
        ]
        with log.open("wb") as sink:
            process = subprocess.Popen(command, env=cluster.env(), stdout=sink, stderr=subprocess.STDOUT)
        handle = OperatorProcess(process, metrics, health, log)
        started.append(handle)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, f"operator exited:\n{log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2)
                return handle
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"operator never became healthy:\n{log.read_text()[-3000:]}")

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def operator(start_operator: Callable[[], OperatorProcess]) -> OperatorProcess:
    return start_operator()


class Kube:
    """Small helpers over the admin kubectl for one test namespace."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def apply(self, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(
            "apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump(manifest), check=check
        )

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, "-n", self.namespace, check=check)

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")

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
