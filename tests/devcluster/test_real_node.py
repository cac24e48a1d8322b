"""The real node: containers really run there, and `down` leaves nothing of it on the machine (processes, mounts,
the bridge, cgroups, iptables and nftables, sysctls, host paths), even with pods still running; a cluster killed
without `down` leaves a node that the next cluster undoes before it claims the machine."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from modeldeploy_devcluster import ClusterConfig, ClusterConnection, LocalCluster
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


def _run_pods(connection: ClusterConnection, names: tuple[str, ...]) -> None:
    for name in names:
        connection.kubectl("apply", "-f", "-", input=json.dumps(_pod(name)))

    def running() -> bool:
        pods = json.loads(connection.kubectl("get", "pods", "-n", "default", "-o", "json").stdout)["items"]
        return len(pods) == len(names) and all(pod["status"].get("phase") == "Running" for pod in pods)

    wait_until(running, f"{len(names)} pods Running on the real node", timeout=120)


@pytest.mark.own_real_node
@pytest.mark.timeout(420)
def test_pods_run_on_the_real_node_and_down_leaves_nothing_behind(tmp_path: Path) -> None:
    config = ClusterConfig(gpu_nodes=1, cpu_nodes=0)
    killed = LocalCluster(tmp_path / "killed", config)
    connection = killed.start()
    try:
        state = killed.load_state()
        assert state is not None and state.real_node is not None
        record = state.real_node.host
        node = json.loads(connection.kubectl("get", "node", REAL_NODE_NAME, "-o", "json").stdout)
        assert node["spec"]["taints"] == [
            {"key": "devcluster.modeldeploy.dev/real-node", "value": "true", "effect": "NoSchedule"}
        ]
        assert "nvidia.com/gpu" not in node["status"]["capacity"]
        _run_pods(connection, ("one", "two"))
        with pytest.raises(RealNodeUnavailable, match="a real node already runs on this machine"):
            LocalCluster(tmp_path / "second", config).start()

        # Killed as a cancelled CI job kills it: no `down`, its pods' containers and the node's network left behind.
        for process in state.processes:
            os.kill(process.pid, signal.SIGKILL)
        successor = LocalCluster(tmp_path / "successor", config)
        try:
            _run_pods(successor.start(), ("three",))
        finally:
            successor.down()
    finally:
        killed.down()
    # The successor was stopped with its pod running: its containers, shims, mounts and network went with the node.
    assert leftovers(record, killed.node_paths) == []
