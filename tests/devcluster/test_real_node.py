"""The real node: containers really run there, and `down` leaves nothing of it on the machine (processes, mounts,
the bridge, cgroups, iptables and nftables, sysctls, host paths), even with pods still running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modeldeploy_devcluster import ClusterConfig, LocalCluster
from modeldeploy_devcluster.host import RealNodeUnavailable, leftovers
from modeldeploy_devcluster.real_node import PAUSE_IMAGE, REAL_NODE_NAME, real_node_scheduling
from modeldeploy_devcluster.testing import wait_until


def _pod(name: str) -> dict[str, object]:
    """The locally built sandbox image as a workload, with the volume kinds that mount on the host."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            **real_node_scheduling(),
            "containers": [
                {
                    "name": "main",
                    "image": PAUSE_IMAGE,
                    "imagePullPolicy": "Never",
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        },
    }


@pytest.mark.own_real_node
@pytest.mark.timeout(300)
def test_pods_run_on_the_real_node_and_down_leaves_nothing_behind(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "cluster", ClusterConfig(gpu_nodes=1, cpu_nodes=0))
    connection = local.start()
    try:
        state = local.load_state()
        assert state is not None and state.real_node is not None
        record = state.real_node.host
        node = json.loads(connection.kubectl("get", "node", REAL_NODE_NAME, "-o", "json").stdout)
        assert node["spec"]["taints"] == [
            {"key": "devcluster.modeldeploy.dev/real-node", "value": "true", "effect": "NoSchedule"}
        ]
        assert "nvidia.com/gpu" not in node["status"]["capacity"]
        for name in ("one", "two"):
            connection.kubectl("apply", "-f", "-", input=json.dumps(_pod(name)))

        def running() -> bool:
            pods = json.loads(connection.kubectl("get", "pods", "-n", "default", "-o", "json").stdout)["items"]
            return len(pods) == 2 and all(pod["status"].get("phase") == "Running" for pod in pods)

        wait_until(running, "two pods Running on the real node", timeout=120)
        with pytest.raises(RealNodeUnavailable, match="a real node already runs on this machine"):
            LocalCluster(tmp_path / "second", ClusterConfig(gpu_nodes=1, cpu_nodes=0)).start()
    finally:
        local.down()
    # Stopped with both pods running: their containers, shims, mounts and network went with the node.
    assert leftovers(record, local.node_paths) == []
