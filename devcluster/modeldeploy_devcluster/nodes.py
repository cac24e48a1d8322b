"""Manifests of the simulated nodes: KWOK plays their kubelets.

GPU nodes carry what the NVIDIA device plugin and GPU feature discovery put on a real node: the
`nvidia.com/gpu` extended resource, the `nvidia.com/gpu.*` labels and the taint that keeps pods without
a toleration off expensive hardware.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .config import ClusterConfig

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "present"
GPU_TAINT_EFFECT = "NoSchedule"

# KWOK's convention for "this node is fake, a kwok controller owns it"; kwok manages only these.
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
SIMULATED_NODE_LABEL = "type"
SIMULATED_NODE_LABEL_VALUE = "kwok"

# Sized like the machines they stand for: an 8-GPU H100 server and an ordinary CPU worker.
GPU_NODE_CPU = "192"
GPU_NODE_MEMORY = "2Ti"
CPU_NODE_CPU = "32"
CPU_NODE_MEMORY = "128Gi"
NODE_EPHEMERAL_STORAGE = "1Ti"
NODE_MAX_PODS = "110"

# Nodes are numbered across both pools; node i gets the i-th /24 of pods after 10.64.0.0 and the i-th
# address after 100.64.0.0 (shared address space: never routed, never confused with a real host) as its
# InternalIP. ClusterConfig's node limits keep both inside their /10.
_FIRST_POD_NETWORK = ipaddress.IPv4Address("10.64.0.0")
_FIRST_NODE_ADDRESS = ipaddress.IPv4Address("100.64.0.1")


def _pod_cidr(node_index: int) -> str:
    return f"{_FIRST_POD_NETWORK + node_index * 256}/24"


def _internal_ip(node_index: int) -> str:
    return str(_FIRST_NODE_ADDRESS + node_index)


def _node(
    name: str,
    node_index: int,
    *,
    cpu: str,
    memory: str,
    extra_labels: dict[str, str],
    extra_resources: dict[str, str],
    taints: list[dict[str, str]],
) -> dict[str, Any]:
    resources = {
        "cpu": cpu,
        "memory": memory,
        "ephemeral-storage": NODE_EPHEMERAL_STORAGE,
        "pods": NODE_MAX_PODS,
        **extra_resources,
    }
    pod_cidr = _pod_cidr(node_index)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                SIMULATED_NODE_LABEL: SIMULATED_NODE_LABEL_VALUE,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/worker": "",
                **extra_labels,
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr], "taints": taints},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": _internal_ip(node_index)},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def gpu_node_labels(config: ClusterConfig) -> dict[str, str]:
    """The labels NVIDIA's GPU feature discovery sets, as the scheduler and the operator see them."""
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": config.gpu_product,
        "nvidia.com/gpu.count": str(config.gpus_per_node),
        "nvidia.com/gpu.memory": str(config.gpu_memory_mib),
    }


def gpu_toleration() -> dict[str, str]:
    """The toleration a pod needs to land on a simulated GPU node."""
    return {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}


def node_manifests(config: ClusterConfig) -> list[dict[str, Any]]:
    """Every simulated node: `gpu-node-<i>` first, then `cpu-node-<i>`."""
    gpu_taint = {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
    nodes = [
        _node(
            f"gpu-node-{i}",
            i,
            cpu=GPU_NODE_CPU,
            memory=GPU_NODE_MEMORY,
            extra_labels=gpu_node_labels(config),
            extra_resources={GPU_RESOURCE: str(config.gpus_per_node)},
            taints=[gpu_taint],
        )
        for i in range(config.gpu_nodes)
    ]
    nodes += [
        _node(
            f"cpu-node-{i}",
            config.gpu_nodes + i,
            cpu=CPU_NODE_CPU,
            memory=CPU_NODE_MEMORY,
            extra_labels={},
            extra_resources={},
            taints=[],
        )
        for i in range(config.cpu_nodes)
    ]
    return nodes
