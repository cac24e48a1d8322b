"""The `devcluster.modeldeploy.dev/simulate` annotation: pods fail the way real ones do, for status tests."""

from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.models.core_v1 import ContainerStatus, PodStatus
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from modeldeploy_devcluster import (
    EXIT_CODE_ANNOTATION,
    MESSAGE_ANNOTATION,
    SIMULATE_ANNOTATION,
    ClusterConnection,
    Simulation,
)
from modeldeploy_devcluster.testing import deployment_manifest, pod_manifest, pod_template, wait_until


def _started_status(client: Client, namespace: str, name: str) -> PodStatus | None:
    """The pod's status once the simulated kubelet has reported its containers, else None."""
    status = client.get(Pod, name, namespace=namespace).status
    return status if status and status.containerStatuses else None


def _only_container(status: PodStatus) -> ContainerStatus:
    assert status.containerStatuses is not None
    [container] = status.containerStatuses
    return container


def _condition(status: PodStatus, kind: str) -> str | None:
    return next((c.status for c in status.conditions or [] if c.type == kind), None)


def test_crash_loop_reports_exit_code_and_message(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    annotations = {
        SIMULATE_ANNOTATION: Simulation.CRASH_LOOP,
        EXIT_CODE_ANNOTATION: "137",
        MESSAGE_ANNOTATION: "CUDA error: out of memory",
    }
    client.apply(from_dict(deployment_manifest("crasher", namespace, annotations=annotations)))

    pods = wait_until(lambda: list(client.list(Pod, namespace=namespace, labels={"app": "crasher"})), "a pod")
    assert pods[0].metadata is not None and pods[0].metadata.name is not None
    status = wait_until(lambda: _started_status(client, namespace, pods[0].metadata.name), "container statuses")
    container = _only_container(status)
    assert container.state is not None and container.state.waiting is not None
    assert container.state.waiting.reason == "CrashLoopBackOff"
    assert container.lastState is not None and container.lastState.terminated is not None
    assert container.lastState.terminated.exitCode == 137
    assert container.lastState.terminated.message == "CUDA error: out of memory"
    assert container.restartCount > 0
    assert not container.ready
    assert _condition(status, "Ready") == "False"
    deployment_status = client.get(Deployment, "crasher", namespace=namespace).status
    assert deployment_status is not None and not deployment_status.availableReplicas


def test_crash_loop_defaults_to_exit_code_one(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    annotations = {SIMULATE_ANNOTATION: Simulation.CRASH_LOOP}
    client.apply(from_dict(pod_manifest("crasher", namespace, annotations=annotations)))

    status = wait_until(lambda: _started_status(client, namespace, "crasher"), "container statuses")
    terminated = _only_container(status).lastState
    assert terminated is not None and terminated.terminated is not None
    assert terminated.terminated.exitCode == 1
    assert not terminated.terminated.message


def test_image_pull_error_names_the_image(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    annotations = {SIMULATE_ANNOTATION: Simulation.IMAGE_PULL_ERROR}
    manifest = pod_manifest("unpullable", namespace, annotations=annotations)
    manifest["spec"]["containers"][0]["image"] = "registry.example/does-not-exist:1"
    client.apply(from_dict(manifest))

    status = wait_until(lambda: _started_status(client, namespace, "unpullable"), "container statuses")
    container = _only_container(status)
    assert container.state is not None and container.state.waiting is not None
    assert container.state.waiting.reason == "ImagePullBackOff"
    assert "registry.example/does-not-exist:1" in (container.state.waiting.message or "")
    assert status.phase == "Pending"
    assert _condition(status, "Ready") == "False"


def test_not_ready_runs_but_never_becomes_ready(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    annotations = {SIMULATE_ANNOTATION: Simulation.NOT_READY}
    client.apply(from_dict(pod_manifest("sluggish", namespace, annotations=annotations)))

    status = wait_until(lambda: _started_status(client, namespace, "sluggish"), "container statuses")
    container = _only_container(status)
    assert status.phase == "Running"
    assert container.state is not None and container.state.running is not None
    assert not container.ready
    assert _condition(status, "Ready") == "False"
    assert _condition(status, "ContainersReady") == "False"


def test_unannotated_pod_runs_ready_with_init_containers_completed(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    client.apply(from_dict(pod_manifest("healthy", namespace, init_containers=True)))

    status = wait_until(lambda: _started_status(client, namespace, "healthy"), "container statuses")
    assert status.phase == "Running"
    assert _condition(status, "Ready") == "True"
    assert status.podIP and status.podIP.startswith("10.")
    [init] = status.initContainerStatuses or []
    assert init.state is not None and init.state.terminated is not None
    assert init.state.terminated.reason == "Completed" and init.state.terminated.exitCode == 0


def test_job_pods_complete(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    template = pod_template("batch")
    template["spec"]["restartPolicy"] = "Never"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "batch", "namespace": namespace},
        "spec": {"template": template, "backoffLimit": 0},
    }
    client.apply(from_dict(job))

    def succeeded() -> bool:
        status = client.get(Job, "batch", namespace=namespace).status
        return status is not None and status.succeeded == 1

    wait_until(succeeded, "the Job to succeed")
