"""Helpers of the end-to-end tests on the real node: ModelDeployments placed there, their status, and calls
through their Services from the machine (kube-proxy routes the service range to the node's bridge)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.playground import service_url
from modeldeploy_devcluster.real_node import real_node_scheduling
from modeldeploy_devcluster.testing import wait_until

MODEL_CLAIM = "e2e-models"
# A replica's first start on two shared cores: import torch, load the model, pass readiness.
READY_TIMEOUT_SECONDS = 240
INFER_BODY = {
    "inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2, -2, 1, 0.5, 3]}]
}


def model_deployment(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A small CPU ModelDeployment on the real node; `spec` adds to or replaces the defaults."""
    scheduling = real_node_scheduling()
    return {
        "apiVersion": "serving.modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": f"pvc://{MODEL_CLAIM}/iris.pt"},
            "replicas": 1,
            "runtime": {"resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}},
            "scheduling": {"nodeSelector": scheduling["nodeSelector"], "tolerations": scheduling["tolerations"]},
            **spec,
        },
    }


def apply(cluster: ClusterConnection, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--server-side", "--field-manager=e2e-test", "-f", "-", input=json.dumps(manifest))


def status_of(cluster: ClusterConnection, namespace: str, name: str) -> dict[str, Any]:
    md = json.loads(cluster.kubectl("get", "md", name, "-n", namespace, "-o", "json").stdout)
    status: dict[str, Any] = md.get("status") or {}
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def wait_for_status(
    cluster: ClusterConnection,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = READY_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Wait until the ModelDeployment's status passes `check`; returns that status."""
    seen: dict[str, Any] = {}

    def passes() -> bool:
        seen.clear()
        seen.update(status_of(cluster, namespace, name))
        return check(seen)

    try:
        wait_until(passes, f"{namespace}/{name}: {what}", timeout=timeout)
    except TimeoutError as error:
        pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        raise AssertionError(f"{error}\nlast status: {json.dumps(seen, indent=1)}\npods:\n{pods}") from None
    return dict(seen)


def is_ready(status: dict[str, Any]) -> bool:
    return condition(status, "Ready").get("status") == "True"


def degraded_because(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        degraded = condition(status, "Degraded")
        return degraded.get("status") == "True" and degraded.get("reason") == reason

    return check


def infer(url: str, model: str, body: dict[str, Any] | None = None, timeout: float = 10) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/infer",
        data=json.dumps(body or INFER_BODY).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def wait_for_answer(cluster: ClusterConnection, namespace: str, name: str) -> tuple[str, dict[str, Any]]:
    """The Service's URL and its first answer (kube-proxy's rules can trail the pod's readiness by a moment)."""
    url = service_url(cluster, namespace, name)
    answers: list[dict[str, Any]] = []

    def answered() -> bool:
        try:
            answers.append(infer(url, name, timeout=5))
        except (urllib.error.URLError, OSError):
            return False
        return True

    wait_until(answered, f"an inference answer from {url}", timeout=60)
    return url, answers[-1]


def expected_logits(model: Path) -> list[float]:
    """What the model computes for INFER_BODY, computed here with torch itself."""
    import torch

    module = torch.jit.load(str(model))
    features = torch.tensor(INFER_BODY["inputs"][0]["data"], dtype=torch.float32).reshape(2, 4)
    with torch.no_grad():
        values: list[float] = module(features).flatten().tolist()
    return values


def elapsed_since(started: float) -> float:
    return time.monotonic() - started


# Bounds of the load: it stops by itself even if the rollout never ends. Paced, so it lasts the whole rollout.
MAX_LOAD_SECONDS = 300
MAX_REQUESTS = 60_000
PACE_SECONDS = 0.005


@dataclass
class Load:
    """One client sending requests back to back through the Service, each on a new connection."""

    url: str
    model: str
    sent: int = 0
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    # Set when the load ended at a bound rather than because the test stopped it.
    ran_out: bool = False

    def run(self) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        while not self.stop.wait(PACE_SECONDS):
            if time.monotonic() > deadline or self.sent >= MAX_REQUESTS:
                self.ran_out = True
                return
            self.sent += 1
            try:
                answer = infer(self.url, self.model, timeout=10)
            except (urllib.error.URLError, OSError) as error:
                self.failures.append(repr(error))
                continue
            if answer["outputs"][0]["shape"] == [2, 3]:
                self.answered += 1
            else:
                self.failures.append(f"unexpected answer {answer}")


@contextmanager
def steady_load(cluster: ClusterConnection, namespace: str, name: str) -> Iterator[Load]:
    """A ModelDeployment that already answers, under a Load through its Service for the duration of the block."""
    wait_for_status(cluster, namespace, name, is_ready, "Ready")
    wait_for_answer(cluster, namespace, name)
    load = Load(service_url(cluster, namespace, name), name)
    client = threading.Thread(target=load.run, daemon=True)
    client.start()
    try:
        time.sleep(2)  # some traffic before the change
        yield load
    finally:
        load.stop.set()
        client.join(timeout=30)
