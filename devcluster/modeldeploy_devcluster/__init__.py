"""A local, real Kubernetes control plane with KWOK-simulated GPU nodes, for tests and the playground."""

from .cluster import ClusterStartError, LocalCluster
from .config import ClusterConfig
from .connection import ClusterConnection, KubectlError
from .kwok import EXIT_CODE_ANNOTATION, MESSAGE_ANNOTATION, REASON_ANNOTATION, SIMULATE_ANNOTATION, Simulation
from .nodes import GPU_RESOURCE, gpu_toleration

__all__ = [
    "EXIT_CODE_ANNOTATION",
    "GPU_RESOURCE",
    "MESSAGE_ANNOTATION",
    "REASON_ANNOTATION",
    "SIMULATE_ANNOTATION",
    "ClusterConfig",
    "ClusterConnection",
    "ClusterStartError",
    "KubectlError",
    "LocalCluster",
    "Simulation",
    "gpu_toleration",
]
