"""The simulated nodes' manifests: what the scheduler and the operator will see."""

import ipaddress

import pytest
from modeldeploy_devcluster import ClusterConfig
from modeldeploy_devcluster.nodes import GPU_RESOURCE, node_manifests
from pydantic import ValidationError


def _by_name(config: ClusterConfig) -> dict[str, dict]:
    return {node["metadata"]["name"]: node for node in node_manifests(config)}


def test_default_fleet_is_two_gpu_nodes_and_one_cpu_node() -> None:
    assert list(_by_name(ClusterConfig())) == ["gpu-node-0", "gpu-node-1", "cpu-node-0"]


def test_gpu_node_carries_gfd_labels_gpu_capacity_and_taint() -> None:
    node = _by_name(ClusterConfig())["gpu-node-0"]
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    assert labels["type"] == "kwok"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    for field in ("capacity", "allocatable"):
        assert node["status"][field][GPU_RESOURCE] == "8"
        assert node["status"][field]["pods"] == "110"


def test_cpu_node_has_no_gpu_and_no_taint() -> None:
    node = _by_name(ClusterConfig())["cpu-node-0"]
    assert GPU_RESOURCE not in node["status"]["capacity"]
    assert node["spec"]["taints"] == []
    assert not any(key.startswith("nvidia.com/") for key in node["metadata"]["labels"])


def test_parameters_shape_the_fleet() -> None:
    config = ClusterConfig(gpu_nodes=3, gpus_per_node=4, cpu_nodes=2, gpu_product="NVIDIA-A100-SXM4-40GB")
    nodes = _by_name(config)
    assert sorted(nodes) == ["cpu-node-0", "cpu-node-1", "gpu-node-0", "gpu-node-1", "gpu-node-2"]
    gpu_node = nodes["gpu-node-2"]
    assert gpu_node["status"]["allocatable"][GPU_RESOURCE] == "4"
    assert gpu_node["metadata"]["labels"]["nvidia.com/gpu.count"] == "4"
    assert gpu_node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"


def test_scale_fleet_gets_disjoint_pod_networks_and_distinct_addresses() -> None:
    nodes = node_manifests(ClusterConfig(gpu_nodes=300, cpu_nodes=20))
    networks = [ipaddress.ip_network(node["spec"]["podCIDR"]) for node in nodes]
    addresses = [node["status"]["addresses"][0]["address"] for node in nodes]
    assert len(nodes) == 320
    assert len(set(networks)) == len(networks)
    assert all(a.supernet(new_prefix=10) == ipaddress.ip_network("10.64.0.0/10") for a in networks)
    assert len(set(addresses)) == len(addresses)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gpus_per_node", 0),
        ("gpu_nodes", -1),
        ("gpu_product", "NVIDIA H100"),
        ("gpu_product", "x" * 64),
        ("controller_manager_qps", 0),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        ClusterConfig.model_validate({field: value})
    assert raised.value.errors()[0]["loc"] == (field,)


def test_a_fleet_needs_at_least_one_node() -> None:
    with pytest.raises(ValidationError, match="gpu_nodes \\+ cpu_nodes must be at least 1"):
        ClusterConfig(gpu_nodes=0, cpu_nodes=0)
