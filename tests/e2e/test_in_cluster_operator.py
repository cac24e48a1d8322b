"""The chart as a user installs it, with the images CI built: the operator runs as a pod with its own token, and the
runtime pods it creates serve a real model through their Service."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.images import LocalImages
from modeldeploy_devcluster.real_node import NODE_IP, REAL_NODE_NAME
from real_pods import expected_logits, is_ready, wait_for_answer, wait_for_status


@pytest.mark.timeout(600)
def test_the_operator_pod_reconciles_a_model_whose_pod_answers_through_the_service(
    cluster: ClusterConnection,
    in_cluster_operator: str,
    deploy: Callable[..., str],
    example_model: Path,
    local_images: LocalImages,
) -> None:
    namespace = in_cluster_operator
    operator_pods = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=modeldeploy", "-o", "json").stdout
    )["items"]
    assert len(operator_pods) == 1
    (operator_pod,) = operator_pods
    assert operator_pod["spec"]["nodeName"] == REAL_NODE_NAME
    assert operator_pod["spec"]["containers"][0]["image"] == local_images.operator
    assert operator_pod["spec"]["serviceAccountName"], "the operator calls the apiserver with its own token"
    assert all(c["ready"] for c in operator_pod["status"]["containerStatuses"])

    deploy("iris")
    status = wait_for_status(cluster, namespace, "iris", is_ready, "Ready")
    assert status["readySummary"] == "1/1"
    _, answer = wait_for_answer(cluster, namespace, "iris")
    assert answer["model_name"] == "iris"
    (logits,) = answer["outputs"]
    assert logits["shape"] == [2, 3]
    assert logits["data"] == pytest.approx(expected_logits(example_model), rel=1e-5)

    runtime_pod = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=iris", "-o", "json").stdout
    )["items"][0]
    assert runtime_pod["spec"]["nodeName"] == REAL_NODE_NAME
    assert runtime_pod["spec"]["containers"][0]["image"] == local_images.runtime
    # logs and exec go from the apiserver to the real kubelet, by its InternalIP.
    logs = cluster.kubectl("logs", "-n", namespace, runtime_pod["metadata"]["name"]).stdout
    assert "iris" in logs
    user = cluster.kubectl(
        "exec", "-n", namespace, runtime_pod["metadata"]["name"], "--", "python", "-c", "import os; print(os.getuid())"
    ).stdout
    assert user.strip() == "65532"
    # The network rule, seen from inside a pod: no default route (nothing leaves the machine), and the cluster's DNS
    # as the only resolver, which answers for Service names and for nothing outside the cluster.
    pod_name = runtime_pod["metadata"]["name"]
    routes = cluster.kubectl("exec", "-n", namespace, pod_name, "--", "cat", "/proc/net/route").stdout
    assert "00000000" not in [line.split()[1] for line in routes.splitlines()[1:]], routes
    resolv = cluster.kubectl("exec", "-n", namespace, pod_name, "--", "cat", "/etc/resolv.conf").stdout
    assert [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")] == [NODE_IP], resolv
    lookup = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"
    found = cluster.kubectl("exec", "-n", namespace, pod_name, "--", "python", "-c", lookup, "kubernetes.default.svc")
    assert found.stdout.strip() == "10.96.0.1"
    outside = cluster.kubectl("exec", "-n", namespace, pod_name, "--", "python", "-c", lookup, "pypi.org", check=False)
    assert outside.returncode != 0 and "gaierror" in outside.stderr, outside.stdout
    operator_log = cluster.kubectl("logs", "-n", namespace, operator_pod["metadata"]["name"]).stdout
    assert "forbidden" not in operator_log.lower()
