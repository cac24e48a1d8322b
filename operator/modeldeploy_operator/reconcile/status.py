"""The status a ModelDeployment should show, computed from what its children report. Pure: no I/O, no clock.

Conditions follow the Kubernetes and kstatus conventions, so `kubectl wait --for=condition=Ready`, Argo CD and
Flux read them without custom scripts:
- Ready: every desired replica runs the current spec and passes its readiness probe.
- Progressing: a rollout or scale is under way and can still finish by itself.
- Degraded: something stops it (a crash loop, a bad image, no GPU anywhere, ...).
- Stalled: Degraded in a way only a person can fix (not Unschedulable, which an autoscaler can heal); kstatus,
  and so Flux and `kubectl wait`-based pipelines, read it as Failed instead of waiting for a timeout.
lastFailure says why, in words a user can act on, and keeps the last reason after it heals.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modeldeploy_operator.manifests.deployment import FETCH_CONTAINER, RUNTIME_CONTAINER

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


@dataclass(frozen=True)
class Observed:
    """Everything the status is computed from."""

    generation: int
    desired_replicas: int
    url: str
    selector: str
    model_name: str
    children_current: bool  # the Deployment and Service carry what the current spec asks for
    deployment: Mapping[str, Any] | None
    pods: Iterable[Mapping[str, Any]]
    spec_error: Failure | None = None  # the spec cannot be served (InvalidSpec, or ApplyFailed from the apiserver)


def compute_status(observed: Observed, previous: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    deployment = observed.deployment or {}
    dep_status = deployment.get("status") or {}
    ready = int(dep_status.get("readyReplicas") or 0)
    updated = int(dep_status.get("updatedReplicas") or 0)
    replicas = int(dep_status.get("replicas") or 0)
    failure = observed.spec_error or find_failure(deployment, observed.pods)
    rolled_out = rollout_complete(deployment, observed.desired_replicas) and observed.children_current

    if observed.spec_error is not None:
        progressing = ("False", observed.spec_error.reason, observed.spec_error.message)
    elif rolled_out:
        progressing = (
            "False",
            "RolloutComplete",
            f"{observed.desired_replicas} replica(s) run the current spec",
        )
    elif failure is not None and failure.reason == "ProgressDeadlineExceeded":
        progressing = ("False", failure.reason, failure.message)
    else:
        progressing = ("True", *_progress_reason(observed, deployment, updated, ready))

    if rolled_out and observed.spec_error is None:
        if observed.desired_replicas == 0:
            ready_condition = ("True", "ScaledToZero", "scaled to 0 replicas")
        else:
            ready_condition = (
                "True",
                "Ready",
                f"{ready}/{observed.desired_replicas} replicas ready at {observed.url}",
            )
    elif failure is not None:
        ready_condition = ("False", failure.reason, failure.message)
    else:
        ready_condition = ("False", progressing[1], progressing[2])

    if failure is not None:
        degraded = ("True", failure.reason, failure.message)
    else:
        degraded = ("False", "AsExpected", "no failures")
    if failure is not None and failure.reason not in HEALS_BY_ITSELF:
        stalled = ("True", failure.reason, failure.message)
    else:
        stalled = ("False", "AsExpected", "not stalled")

    previous_conditions = {c.get("type"): c for c in previous.get("conditions") or []}
    kinds = (("Ready", ready_condition), ("Progressing", progressing), ("Degraded", degraded), ("Stalled", stalled))
    conditions = [
        _condition(kind, value, observed.generation, previous_conditions.get(kind), now) for kind, value in kinds
    ]
    return {
        "observedGeneration": _observed_generation(observed, previous),
        "conditions": conditions,
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "readySummary": f"{ready}/{observed.desired_replicas}",
        "selector": observed.selector,
        "modelName": observed.model_name,
        "url": observed.url,
        "lastFailure": _last_failure(failure, previous.get("lastFailure"), now),
    }


def _observed_generation(observed: Observed, previous: Mapping[str, Any]) -> int | None:
    # We have acted on a generation once its children carry it, or once we know it cannot be served.
    if observed.children_current or observed.spec_error is not None:
        return observed.generation
    previous_generation = previous.get("observedGeneration")
    return int(previous_generation) if previous_generation is not None else None


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


def _progress_reason(observed: Observed, deployment: Mapping[str, Any], updated: int, ready: int) -> tuple[str, str]:
    if not deployment:
        return "Creating", "creating the Deployment and Service"
    if not observed.children_current:
        return "Updating", "applying the current spec to the Deployment and Service"
    desired = observed.desired_replicas
    if updated < desired:
        return "RollingOut", f"{updated}/{desired} replicas run the current spec"
    return "WaitingForReplicas", f"{ready}/{desired} replicas ready"


def find_failure(deployment: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> Failure | None:
    """The most telling failure among the Deployment's conditions and its live pods."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Failure("ProgressDeadlineExceeded", condition.get("message") or "the rollout made no progress")
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return Failure("ReplicaFailure", condition.get("message") or "pods could not be created")
    failures = [
        f
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
        for f in [_pod_failure(pod)]
        if f is not None
    ]
    return min(failures, key=lambda f: (_SEVERITY.get(f.reason, 99), f.message)) if failures else None


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


def _condition(
    kind: str, value: tuple[str, str, str], generation: int, previous: Mapping[str, Any] | None, now: datetime
) -> dict[str, Any]:
    status, reason, message = value
    unchanged = previous is not None and previous.get("status") == status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": previous["lastTransitionTime"] if unchanged and previous else _timestamp(now),
        "observedGeneration": generation,
    }


def _last_failure(failure: Failure | None, previous: Mapping[str, Any] | None, now: datetime) -> Any:
    if failure is None:
        return previous
    if previous and previous.get("reason") == failure.reason and previous.get("message") == failure.message:
        return previous
    return {"reason": failure.reason, "message": failure.message, "time": _timestamp(now)}


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def transition_events(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Kubernetes events for the changes a user cares about, and only those: (type, reason, message)."""
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    events = []
    for condition in current.get("conditions") or []:
        old = before.get(condition["type"]) or {}
        changed = old.get("status") != condition["status"] or old.get("reason") != condition["reason"]
        if not changed:
            continue
        if condition["type"] == "Ready" and condition["status"] == "True":
            events.append(("Normal", condition["reason"], condition["message"]))
        elif condition["type"] == "Degraded" and condition["status"] == "True":
            events.append(("Warning", condition["reason"], condition["message"]))
        elif condition["type"] == "Degraded" and old.get("status") == "True":
            events.append(("Normal", "Recovered", f"no longer {old.get('reason')}"))
    return events
