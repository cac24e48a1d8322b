"""What a Deployment and its pods say: which version each pod runs, whether a rollout is complete, what went
wrong (from the Deployment's conditions and the pods' container states). Pure: no I/O, no clock."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.manifests.deployment import FETCH_CONTAINER, RUNTIME_CONTAINER, template_hash

# Exit codes of `python -m modeldeploy_runtime` (serve and fetch): the runtime's contract with us.
EXIT_MODEL_LOAD_FAILED = 3
EXIT_FETCH_FAILED = 4
EXIT_CHECKSUM_MISMATCH = 5

# Failures a cluster can outgrow without anyone touching the ModelDeployment: a cluster autoscaler adds the GPU
# node. Everything else Degraded is also Stalled, kstatus' "needs a person" (Flux and kstatus report Failed).
HEALS_BY_ITSELF = frozenset({"Unschedulable"})

_IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
_CONFIG_ERROR_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


def live_pods(pods: Iterable[Mapping[str, Any]], version: str | None) -> list[Mapping[str, Any]]:
    """The pods that run pod template `version` and are not being deleted."""
    return [
        pod
        for pod in pods
        if template_hash(pod) == version and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]


def find_failure(deployment: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> Failure | None:
    """The most telling failure among the Deployment's conditions and its live pods."""
    return deployment_failure(deployment) or most_telling(pod_failures(pods))


def deployment_failure(deployment: Mapping[str, Any]) -> Failure | None:
    """A rollout the Deployment controller gave up on, or pods it cannot create."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Failure("ProgressDeadlineExceeded", condition.get("message") or "the rollout made no progress")
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return Failure("ReplicaFailure", condition.get("message") or "pods could not be created")
    return None


def pod_failures(pods: Iterable[Mapping[str, Any]]) -> list[Failure]:
    """One failure for each pod that has one, leaving out pods being deleted."""
    return [
        failure
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
        for failure in [_pod_failure(pod)]
        if failure is not None
    ]


def most_telling(failures: Iterable[Failure]) -> Failure | None:
    return min(failures, key=lambda f: (_SEVERITY.get(f.reason, 99), f.message), default=None)


def waits_for_gpu(pod: Mapping[str, Any], gpu_resource: str) -> bool:
    """The scheduler found no node with enough free GPUs for this pod."""
    return any(
        condition.get("type") == "PodScheduled"
        and condition.get("reason") == "Unschedulable"
        and f"Insufficient {gpu_resource}" in (condition.get("message") or "")
        for condition in (pod.get("status") or {}).get("conditions") or []
    )


def rollout_complete(deployment: Mapping[str, Any], desired: int) -> bool:
    """Every replica runs the Deployment's current spec and is available (what `kubectl rollout status` waits for)."""
    if not deployment:
        return False
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation:
        return False
    return (
        int(status.get("updatedReplicas") or 0) == desired
        and int(status.get("replicas") or 0) == desired
        and int(status.get("readyReplicas") or 0) >= desired
        and int(status.get("availableReplicas") or 0) >= desired
    )


# When pods fail in several ways at once, report the one a user must fix first.
_SEVERITY = {
    "ChecksumMismatch": 0,
    "ModelLoadFailed": 1,
    "FetchFailed": 2,
    "ImagePullBackOff": 3,
    "CreateContainerConfigError": 4,
    "CrashLoopBackOff": 5,
    "Unschedulable": 6,
}


def _pod_failure(pod: Mapping[str, Any]) -> Failure | None:
    status = pod.get("status") or {}
    for container in status.get("initContainerStatuses") or []:
        if failure := _container_failure(container, init=True):
            return failure
    for container in status.get("containerStatuses") or []:
        if failure := _container_failure(container, init=False):
            return failure
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return Failure("Unschedulable", condition.get("message") or "no node can run this pod")
    return None


def _container_failure(container: Mapping[str, Any], init: bool) -> Failure | None:
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    name = container.get("name", "")
    if reason in _IMAGE_PULL_REASONS:
        message = waiting.get("message") or f"cannot pull image {container.get('image')}"
        return Failure("ImagePullBackOff", f"container {name}: {message}")
    if reason in _CONFIG_ERROR_REASONS:
        return Failure("CreateContainerConfigError", f"container {name}: {waiting.get('message') or reason}")
    terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated") or {}
    exit_code = terminated.get("exitCode")
    # A real kubelet shows CrashLoopBackOff only between restarts; while the container runs again, not ready yet,
    # its last exit still says why it keeps failing.
    failed_last_time = exit_code not in (None, 0) and (init or not container.get("ready"))
    if not (reason == "CrashLoopBackOff" or failed_last_time):
        return None
    message = (terminated.get("message") or "").strip()
    if exit_code == EXIT_MODEL_LOAD_FAILED and name == RUNTIME_CONTAINER:
        return Failure("ModelLoadFailed", message or "the runtime could not load the model")
    if exit_code == EXIT_CHECKSUM_MISMATCH:  # the fetch's download, or the runtime's check of a volume's file
        return Failure("ChecksumMismatch", message or "the model file does not match spec.model.sha256")
    if exit_code == EXIT_FETCH_FAILED and name == FETCH_CONTAINER:
        return Failure("FetchFailed", message or "the model could not be downloaded from spec.model.uri")
    # The kubelet's reason (OOMKilled) says more than an exit code, and an OOM kill leaves no message.
    detail = f": {_last_line(message)}" if message else f" ({terminated['reason']})" if terminated.get("reason") else ""
    code = f" with exit code {exit_code}" if exit_code is not None else ""
    return Failure("CrashLoopBackOff", f"container {name} keeps exiting{code}{detail}")


def _last_line(message: str) -> str:
    return message.splitlines()[-1][:500]
