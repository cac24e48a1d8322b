"""Helpers for tests against the local cluster: workload manifests to schedule, and `wait_until`."""

from __future__ import annotations

from typing import Any

from .nodes import GPU_RESOURCE, gpu_toleration
from .waiting import wait_until

__all__ = ["deployment_manifest", "pod_manifest", "pod_template", "wait_until"]

# A tiny image reference: nothing is pulled on simulated nodes, but it must look real.
TEST_IMAGE = "registry.k8s.io/pause:3.10"


def pod_template(
    app: str,
    *,
    gpus: int = 0,
    tolerate_gpu: bool = False,
    annotations: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    init_containers: bool = False,
) -> dict[str, Any]:
    """A one-container pod template labelled `app=<app>`, optionally asking for GPUs."""
    container: dict[str, Any] = {"name": "main", "image": TEST_IMAGE}
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
    spec: dict[str, Any] = {"containers": [container]}
    if tolerate_gpu:
        spec["tolerations"] = [gpu_toleration()]
    if node_selector:
        spec["nodeSelector"] = node_selector
    if init_containers:
        spec["initContainers"] = [{"name": "fetch-weights", "image": TEST_IMAGE}]
    return {"metadata": {"labels": {"app": app}, "annotations": annotations or {}}, "spec": spec}


def deployment_manifest(name: str, namespace: str, *, replicas: int = 1, **template: Any) -> dict[str, Any]:
    """A Deployment of `replicas` pods built by `pod_template(name, **template)`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, **template),
        },
    }


def pod_manifest(name: str, namespace: str, **template: Any) -> dict[str, Any]:
    """A bare Pod built by `pod_template(name, **template)`."""
    body = pod_template(name, **template)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**body["metadata"], "name": name, "namespace": namespace},
        "spec": body["spec"],
    }
