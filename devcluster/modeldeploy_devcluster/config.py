"""The parameters of one local cluster, validated once at the edge (CLI flags or test code)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What NVIDIA's GPU feature discovery reports for an H100 SXM node.
DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
DEFAULT_GPU_MEMORY_MIB = 81559

# A Kubernetes label value: at most 63 characters, alphanumeric at both ends, `-_.` inside.
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"


class ClusterConfig(BaseModel):
    """Shape of the simulated fleet and the knobs scale tests need.

    The rate limits default to None, meaning "what a real cluster runs" (kube-controller-manager: 20 QPS,
    burst 30; kube-scheduler: 50 QPS, burst 100); scale tests raise them explicitly and say so.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # 5000 + 5000 nodes stay inside the address plan in nodes.py (one /24 of pod IPs per node).
    gpu_nodes: Annotated[int, Field(ge=0, le=5000, description="simulated GPU nodes")] = 2
    gpus_per_node: Annotated[int, Field(ge=1, le=64, description="nvidia.com/gpu on each GPU node")] = 8
    cpu_nodes: Annotated[int, Field(ge=0, le=5000, description="simulated CPU-only nodes")] = 1
    gpu_product: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=LABEL_VALUE_PATTERN,
            description="nvidia.com/gpu.product label value",
        ),
    ] = DEFAULT_GPU_PRODUCT
    gpu_memory_mib: Annotated[int, Field(ge=1, description="nvidia.com/gpu.memory label value (MiB per GPU)")] = (
        DEFAULT_GPU_MEMORY_MIB
    )
    controller_manager_qps: Annotated[
        float | None, Field(gt=0, description="kube-controller-manager --kube-api-qps")
    ] = None
    controller_manager_burst: Annotated[
        int | None, Field(ge=1, description="kube-controller-manager --kube-api-burst")
    ] = None
    scheduler_qps: Annotated[float | None, Field(gt=0, description="kube-scheduler --kube-api-qps")] = None
    scheduler_burst: Annotated[int | None, Field(ge=1, description="kube-scheduler --kube-api-burst")] = None
    real_node: Annotated[
        bool,
        Field(description="a real worker node beside the simulated ones (kubelet, containerd, kube-proxy; needs root)"),
    ] = True

    @model_validator(mode="after")
    def _has_a_node(self) -> ClusterConfig:
        if self.gpu_nodes + self.cpu_nodes == 0:
            raise ValueError("gpu_nodes + cpu_nodes must be at least 1: pods need a node to run on")
        return self
