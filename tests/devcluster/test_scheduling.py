"""GPU scheduling on the simulated fleet: resources, taints and tolerations behave as on real nodes."""

from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Node, Pod
from modeldeploy_devcluster import ClusterConnection
from modeldeploy_devcluster.testing import deployment_manifest, wait_until


def _pods(client: Client, namespace: str, app: str) -> list[Pod]:
    return list(client.list(Pod, namespace=namespace, labels={"app": app}))


def _available(client: Client, namespace: str, name: str, replicas: int) -> bool:
    status = client.get(Deployment, name, namespace=namespace).status
    return status is not None and status.availableReplicas == replicas


def _failed_scheduling_messages(client: Client, namespace: str) -> list[str]:
    events = client.list(Event, namespace=namespace, fields={"reason": "FailedScheduling"})
    return [event.message or "" for event in events]


def test_one_gpu_deployment_lands_on_a_gpu_node_and_becomes_ready(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    client.apply(from_dict(deployment_manifest("one-gpu", namespace, gpus=1, tolerate_gpu=True)))

    wait_until(lambda: _available(client, namespace, "one-gpu", 1), "one-gpu to be available")
    [pod] = _pods(client, namespace, "one-gpu")
    assert pod.spec is not None and pod.spec.nodeName is not None
    node = client.get(Node, pod.spec.nodeName)
    assert node.metadata is not None and node.metadata.labels is not None
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert pod.status is not None and pod.status.phase == "Running"
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_nine_gpus_stay_pending_with_failed_scheduling_naming_the_gpu(
    cluster: ClusterConnection, namespace: str
) -> None:
    client = cluster.client()
    client.apply(from_dict(deployment_manifest("nine-gpus", namespace, gpus=9, tolerate_gpu=True)))

    messages = wait_until(
        lambda: [m for m in _failed_scheduling_messages(client, namespace) if "nvidia.com/gpu" in m],
        "a FailedScheduling event naming nvidia.com/gpu",
    )
    assert "Insufficient nvidia.com/gpu" in messages[0]
    [pod] = _pods(client, namespace, "nine-gpus")
    assert pod.status is not None and pod.status.phase == "Pending"
    assert pod.spec is not None and pod.spec.nodeName is None


def test_pods_without_the_toleration_never_land_on_gpu_nodes(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    client.apply(from_dict(deployment_manifest("plain", namespace, replicas=4)))
    # Asking for GPU nodes by label is not enough: the taint still keeps the pod off them.
    client.apply(
        from_dict(deployment_manifest("wants-gpu-node", namespace, node_selector={"nvidia.com/gpu.present": "true"}))
    )

    wait_until(lambda: _available(client, namespace, "plain", 4), "plain to be available")
    assert {pod.spec.nodeName for pod in _pods(client, namespace, "plain") if pod.spec} == {"cpu-node-0"}
    messages = wait_until(
        lambda: [m for m in _failed_scheduling_messages(client, namespace) if "untolerated taint" in m],
        "a FailedScheduling event about the GPU taint",
    )
    # 2 GPU nodes and the real node tainted, the CPU node not matching the selector: nowhere to go.
    assert "3 node(s) had untolerated taint" in messages[0]
    [pod] = _pods(client, namespace, "wants-gpu-node")
    assert pod.spec is not None and pod.spec.nodeName is None
