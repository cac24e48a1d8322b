"""The status a ModelDeployment should show, computed from what its children report. Pure: no I/O, no clock.

Conditions follow the Kubernetes and kstatus conventions, so `kubectl wait --for=condition=Ready`, Argo CD and
Flux read them without custom scripts:
- Ready: every desired replica runs the current spec's pod template and the service is Available.
- Available: at least spec.replicas minus rollout.maxUnavailable replicas serve, whichever version they run.
- Progressing: a rollout or scale is under way and can still finish by itself, or an operator change of the pod
  template waits for its upgrade wave (WaitingForUpgradeWave: still Ready, the running template serves the spec).
- Degraded: the current version cannot reach availability (its pods crash, cannot load the model, cannot be
  placed, ...), or it failed and was rolled back. One failing pod that the allowed unavailability covers is not.
- Stalled: Degraded in a way only a person can fix (not Unschedulable, which an autoscaler can heal); kstatus,
  and so Flux and `kubectl wait`-based pipelines, read it as Failed instead of waiting for a timeout.
- RolledBack: the spec's version failed and the Deployment runs the last version that succeeded.
lastFailure says why, in words a user can act on, and keeps the last reason after it heals; revisions keeps the
last versions and their outcome (reconcile/rollback.py).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modeldeploy_operator.reconcile.rollback import Rollback, Version, record_revision
from modeldeploy_operator.reconcile.workload import (
    HEALS_BY_ITSELF,
    Failure,
    deployment_failure,
    live_pods,
    most_telling,
    pod_failures,
    rollout_complete,
    waits_for_gpu,
)


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
    version: Version | None = None  # the pod template the spec asks for; None when it cannot be built
    allowed_unavailable: int = 0  # rollout.maxUnavailable, resolved against desired_replicas
    gpu_resource: str | None = None  # the resource GPUs are counted in, when the replicas need GPUs
    rollback: Rollback | None = None  # in force: the spec's version failed, the Deployment runs an older one
    rollback_blocked: str | None = None  # a rollback was due but cannot happen (the old ReplicaSet is gone)
    replacing_in_place: bool = False  # no spare GPU for a surge replica (reconcile/rollout.py)
    waiting_for_upgrade_wave: bool = False  # an operator change of the pod template waits (upgrade_waves.py)


@dataclass(frozen=True)
class _Counts:
    replicas: int
    ready: int
    updated: int
    available: int
    needed: int  # available replicas the service needs to be Available

    @classmethod
    def of(cls, observed: Observed) -> "_Counts":
        status = (observed.deployment or {}).get("status") or {}
        desired = observed.desired_replicas
        return cls(
            replicas=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            # At least one while any is desired: a service with nothing serving is never Available.
            needed=max(desired - observed.allowed_unavailable, min(desired, 1)),
        )


def compute_status(observed: Observed, previous: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    deployment = observed.deployment or {}
    counts = _Counts.of(observed)
    desired = observed.desired_replicas
    current_pods = live_pods(observed.pods, observed.version.template_hash if observed.version else None)
    failing = pod_failures(current_pods)
    gpu_wait = _waiting_for_gpu(observed, current_pods, counts)
    failure = _with_blocked_rollback(
        _blocking_failure(observed, deployment, failing, counts, gpu_wait), observed.rollback_blocked
    )
    available = counts.available >= counts.needed
    rolled_out = rollout_complete(deployment, desired) and observed.children_current
    serves_current_spec = (
        observed.spec_error is None
        and observed.rollback is None
        and observed.children_current
        and (deployment.get("status") or {}).get("observedGeneration")
        == (deployment.get("metadata") or {}).get("generation")
        and counts.updated >= desired
        and counts.replicas == counts.updated
        and available
    )

    if observed.spec_error is not None:
        progressing = ("False", observed.spec_error.reason, observed.spec_error.message)
    elif observed.rollback is not None:
        back = "rolled back" if rolled_out else "rolling back"
        detail = f"{back} to the pod template of generation {observed.rollback.to_generation}"
        progressing = ("False", "RolledBack", detail) if rolled_out else ("True", "RollingBack", detail)
    elif observed.waiting_for_upgrade_wave:
        progressing = (
            "True",
            "WaitingForUpgradeWave",
            "the operator's new pod template waits until the ModelDeployments rolling it now are Ready "
            "(MODELDEPLOY_UPGRADE_WAVE_SIZE at once); the running one serves the spec meanwhile",
        )
    elif rolled_out:
        progressing = ("False", "RolloutComplete", f"{desired} replica(s) run the current spec")
    elif failure is not None and failure.reason == "ProgressDeadlineExceeded":
        progressing = ("False", failure.reason, failure.message)
    else:
        progressing = ("True", *_progress_reason(observed, deployment, counts, gpu_wait))

    if serves_current_spec:
        if desired == 0:
            ready_condition = ("True", "ScaledToZero", "scaled to 0 replicas")
        else:
            ready_condition = ("True", "Ready", f"{counts.ready}/{desired} replicas ready at {observed.url}")
    elif observed.rollback is not None:
        ready_condition = ("False", "RolledBack", observed.rollback.describe())
    elif failure is not None:
        ready_condition = ("False", failure.reason, failure.message)
    else:
        ready_condition = ("False", progressing[1], progressing[2])

    availability = f"{counts.available}/{desired} replicas available, {counts.needed} needed"
    if desired == 0:
        available_condition = ("True", "ScaledToZero", "scaled to 0 replicas")
    elif available:
        available_condition = ("True", "MinimumReplicasAvailable", availability)
    else:
        available_condition = ("False", "MinimumReplicasUnavailable", availability)

    if failure is not None:
        degraded = ("True", failure.reason, failure.message)
    else:
        degraded = ("False", "AsExpected", "no failures")
    if failure is not None and failure.reason not in HEALS_BY_ITSELF:
        stalled = ("True", failure.reason, failure.message)
    else:
        stalled = ("False", "AsExpected", "not stalled")
    if observed.rollback is not None:
        rolled_back = ("True", observed.rollback.reason, observed.rollback.describe())
    else:
        rolled_back = ("False", "AsExpected", "the Deployment runs the spec's pod template")

    previous_conditions = {c.get("type"): c for c in previous.get("conditions") or []}
    kinds = (
        ("Ready", ready_condition),
        ("Available", available_condition),
        ("Progressing", progressing),
        ("Degraded", degraded),
        ("Stalled", stalled),
        ("RolledBack", rolled_back),
    )
    conditions = [
        _condition(kind, value, observed.generation, previous_conditions.get(kind), now) for kind, value in kinds
    ]
    # A failure the allowed unavailability covers is not Degraded, but still worth keeping as the last one seen.
    seen = failure or (None if gpu_wait else most_telling(failing))
    if observed.rollback is not None:
        seen = Failure(observed.rollback.reason, observed.rollback.message)
    status = {
        "observedGeneration": _observed_generation(observed, previous),
        "conditions": conditions,
        "replicas": counts.replicas,
        "readyReplicas": counts.ready,
        "updatedReplicas": counts.updated,
        "readySummary": f"{counts.ready}/{desired}",
        "selector": observed.selector,
        "modelName": observed.model_name,
        "url": observed.url,
        "lastFailure": _last_failure(seen, previous.get("lastFailure"), now),
        "revisions": list(previous.get("revisions") or []),
    }
    if observed.version is not None:
        outcome = _outcome(observed, serves_current_spec, failure)
        status["revisions"] = record_revision(status["revisions"], observed.version, outcome, now)
    return status


def _waiting_for_gpu(observed: Observed, current_pods: list[Mapping[str, Any]], counts: _Counts) -> bool:
    """A new replica waits for a GPU while the previous version still serves every desired replica, or while a
    replica of it is being replaced to free one."""
    if observed.gpu_resource is None:
        return False
    if counts.available < observed.desired_replicas and not observed.replacing_in_place:
        return False
    return any(waits_for_gpu(pod, observed.gpu_resource) for pod in current_pods)


def _blocking_failure(
    observed: Observed,
    deployment: Mapping[str, Any],
    failing: list[Failure],
    counts: _Counts,
    gpu_wait: bool,
) -> Failure | None:
    """What keeps the current version from reaching availability, if anything does."""
    if observed.spec_error is not None:
        return observed.spec_error
    if observed.rollback is not None:
        return Failure(observed.rollback.reason, observed.rollback.describe())
    if failure := deployment_failure(deployment):
        return failure
    if gpu_wait:
        return None
    # Failing replicas the allowed unavailability covers do not stop the service.
    if failing and observed.desired_replicas - len(failing) < counts.needed:
        return most_telling(failing)
    return None


def _with_blocked_rollback(failure: Failure | None, blocked: str | None) -> Failure | None:
    return Failure(failure.reason, f"{failure.message}; {blocked}") if failure and blocked else failure


def _outcome(observed: Observed, serves_current_spec: bool, failure: Failure | None) -> tuple[str, str | None] | None:
    if observed.rollback is not None:
        return ("Failed", observed.rollback.reason)
    if serves_current_spec and observed.desired_replicas > 0:
        return ("Succeeded", None)
    if failure is not None and failure.reason not in HEALS_BY_ITSELF:
        return ("Failed", failure.reason)
    return None


def _observed_generation(observed: Observed, previous: Mapping[str, Any]) -> int | None:
    # We have acted on a generation once its children carry it, or once we know it cannot be served.
    if observed.children_current or observed.spec_error is not None:
        return observed.generation
    previous_generation = previous.get("observedGeneration")
    return int(previous_generation) if previous_generation is not None else None


def _progress_reason(
    observed: Observed, deployment: Mapping[str, Any], counts: _Counts, gpu_wait: bool
) -> tuple[str, str]:
    if not deployment:
        return "Creating", "creating the Deployment and Service"
    if not observed.children_current:
        return "Updating", "applying the current spec to the Deployment and Service"
    desired = observed.desired_replicas
    if observed.replacing_in_place:
        return (
            "ReplacingInPlace",
            f"no free {observed.gpu_resource} for an extra replica: replacing one replica at a time "
            f"({counts.updated}/{desired} run the current spec)",
        )
    if gpu_wait:
        return (
            "WaitingForGpu",
            f"a new replica waits for a free {observed.gpu_resource}; the previous version serves all {desired} "
            "replicas meanwhile",
        )
    if counts.updated < desired:
        return "RollingOut", f"{counts.updated}/{desired} replicas run the current spec"
    return "WaitingForReplicas", f"{counts.ready}/{desired} replicas ready"


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
        elif condition["type"] == "RolledBack" and condition["status"] == "True":
            events.append(("Warning", "RolledBack", condition["message"]))
    return events
