"""Status computation: honest conditions, actionable lastFailure, and no churn."""

from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy_operator.api.v1alpha1 import ModelDeploymentStatus
from modeldeploy_operator.reconcile.rollback import Rollback, Version
from modeldeploy_operator.reconcile.status import Observed, compute_status, transition_events
from modeldeploy_operator.reconcile.workload import Failure, find_failure

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _deployment(
    replicas: int = 2, ready: int = 2, updated: int = 2, generation: int = 3, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            **status,
        },
    }


def _observed(deployment: dict[str, Any] | None, pods: list[dict[str, Any]] = (), **overrides: Any) -> Observed:
    values = {
        "generation": 7,
        "desired_replicas": 2,
        "url": "http://resnet.team-a.svc.cluster.local",
        "selector": "app.kubernetes.io/name=modeldeploy-runtime,app.kubernetes.io/instance=resnet",
        "model_name": "resnet50",
        "children_current": True,
        "deployment": deployment,
        "pods": list(pods),
    }
    return Observed(**{**values, **overrides})


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def _pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "resnet-abc"}, "status": status}


def _crash(name: str, exit_code: int, message: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "image": "runtime:1",
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": exit_code, "reason": "Error", "message": message}},
    }


def test_ready_when_every_replica_runs_the_current_spec() -> None:
    status = compute_status(_observed(_deployment()), {}, NOW)
    assert _conditions(status) == {
        "Ready": ("True", "Ready"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
        "Stalled": ("False", "AsExpected"),
        "RolledBack": ("False", "AsExpected"),
    }
    assert status["observedGeneration"] == 7
    assert status["readySummary"] == "2/2"
    assert status["url"] == "http://resnet.team-a.svc.cluster.local"
    assert status["lastFailure"] is None
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])
    ModelDeploymentStatus.model_validate(status)  # what we write fits our own schema


def test_rollout_in_progress_is_progressing_not_ready() -> None:
    status = compute_status(_observed(_deployment(ready=1, updated=1)), {}, NOW)
    assert _conditions(status)["Ready"] == ("False", "RollingOut")
    assert _conditions(status)["Progressing"] == ("True", "RollingOut")


def test_deployment_controller_lagging_is_not_ready() -> None:
    lagging = _deployment()
    lagging["status"]["observedGeneration"] = 2
    assert _conditions(compute_status(_observed(lagging), {}, NOW))["Ready"][0] == "False"


def test_creating_before_the_deployment_exists() -> None:
    status = compute_status(_observed(None, children_current=False), {}, NOW)
    assert _conditions(status)["Progressing"] == ("True", "Creating")
    assert status["observedGeneration"] is None


def test_unschedulable_copies_the_scheduler_message() -> None:
    message = "0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity."
    pod = _pod(
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
    )
    status = compute_status(_observed(_deployment(replicas=1, ready=0, updated=1), [pod], desired_replicas=1), {}, NOW)
    assert _conditions(status)["Ready"] == ("False", "Unschedulable")
    assert _conditions(status)["Degraded"] == ("True", "Unschedulable")
    assert _conditions(status)["Stalled"] == ("False", "AsExpected"), "an autoscaler can add the node"
    assert status["lastFailure"] == {
        "reason": "Unschedulable",
        "message": message,
        "time": "2026-11-23T12:00:00Z",
    }


def test_model_load_failure_is_named_from_the_runtime_exit_code() -> None:
    pod = _pod(containerStatuses=[_crash("runtime", 3, "ModelLoadFailed: not a TorchScript archive")])
    assert find_failure({}, [pod]) == Failure("ModelLoadFailed", "ModelLoadFailed: not a TorchScript archive")


def test_crash_loop_reports_the_exit_code_and_last_log_line() -> None:
    pod = _pod(containerStatuses=[_crash("runtime", 137, "loading\nKilled: out of memory")])
    failure = find_failure({}, [pod])
    assert failure == Failure(
        "CrashLoopBackOff", "container runtime keeps exiting with exit code 137: Killed: out of memory"
    )


def test_a_crashed_container_running_again_still_reports_why_until_it_is_ready() -> None:
    # Between restarts a real kubelet shows the container running (not ready) with the last exit beside it.
    restarted = {**_crash("runtime", 3, "ModelLoadFailed: not a TorchScript archive"), "state": {"running": {}}}
    assert find_failure({}, [_pod(containerStatuses=[{**restarted, "ready": False}])]) == Failure(
        "ModelLoadFailed", "ModelLoadFailed: not a TorchScript archive"
    )
    assert find_failure({}, [_pod(containerStatuses=[{**restarted, "ready": True}])]) is None


def test_an_oom_kill_names_the_kubelets_reason() -> None:
    oom = _crash("runtime", 137)
    oom["lastState"]["terminated"]["reason"] = "OOMKilled"
    assert find_failure({}, [_pod(containerStatuses=[oom])]) == Failure(
        "CrashLoopBackOff", "container runtime keeps exiting with exit code 137 (OOMKilled)"
    )


def test_fetch_failures_are_named() -> None:
    checksum = _pod(initContainerStatuses=[_crash("fetch-model", 5, "ChecksumMismatch: expected aa, got bb")])
    fetch = _pod(
        initContainerStatuses=[
            {
                "name": "fetch-model",
                "state": {"terminated": {"exitCode": 4, "message": "FetchFailed: HTTP 404"}},
            }
        ]
    )
    assert find_failure({}, [checksum]) == Failure("ChecksumMismatch", "ChecksumMismatch: expected aa, got bb")
    assert find_failure({}, [fetch]) == Failure("FetchFailed", "FetchFailed: HTTP 404")


def test_image_pull_failure_names_the_image() -> None:
    pod = _pod(
        containerStatuses=[
            {
                "name": "runtime",
                "image": "runtime:typo",
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "runtime:typo"',
                    }
                },
            }
        ]
    )
    assert find_failure({}, [pod]) == Failure(
        "ImagePullBackOff", 'container runtime: Back-off pulling image "runtime:typo"'
    )


def test_progress_deadline_exceeded_stops_progressing() -> None:
    deployment = _deployment(
        ready=1,
        updated=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "resnet-5d" has timed out progressing.',
            }
        ],
    )
    status = compute_status(_observed(deployment), {}, NOW)
    assert _conditions(status)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert _conditions(status)["Degraded"] == ("True", "ProgressDeadlineExceeded")


def test_the_most_actionable_failure_wins() -> None:
    pending = _pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}])
    crashing = _pod(containerStatuses=[_crash("runtime", 3, "ModelLoadFailed: bad file")])
    assert find_failure({}, [pending, crashing]).reason == "ModelLoadFailed"


def test_terminating_pods_do_not_count() -> None:
    pod = _pod(containerStatuses=[_crash("runtime", 1)])
    pod["metadata"]["deletionTimestamp"] = "2026-11-23T11:00:00Z"
    assert find_failure({}, [pod]) is None


def test_invalid_spec_is_observed_and_not_ready() -> None:
    error = Failure("InvalidSpec", "spec.gpu.count: must be at most 16")
    status = compute_status(_observed(None, children_current=False, spec_error=error), {}, NOW)
    assert _conditions(status) == {
        "Ready": ("False", "InvalidSpec"),
        "Available": ("False", "MinimumReplicasUnavailable"),
        "Progressing": ("False", "InvalidSpec"),
        "Degraded": ("True", "InvalidSpec"),
        "Stalled": ("True", "InvalidSpec"),
        "RolledBack": ("False", "AsExpected"),
    }
    assert status["observedGeneration"] == 7


def test_scaled_to_zero_is_ready() -> None:
    status = compute_status(_observed(_deployment(replicas=0, ready=0, updated=0), desired_replicas=0), {}, NOW)
    assert _conditions(status)["Ready"] == ("True", "ScaledToZero")


def test_recomputing_the_same_state_changes_nothing() -> None:
    pod = _pod(containerStatuses=[_crash("runtime", 3, "ModelLoadFailed: x")])
    first = compute_status(_observed(_deployment(ready=1), [pod]), {}, NOW)
    again = compute_status(_observed(_deployment(ready=1), [pod]), first, NOW + timedelta(minutes=5))
    assert again == first


def test_last_failure_is_kept_after_recovery_and_transition_times_move_only_on_change() -> None:
    pod = _pod(containerStatuses=[_crash("runtime", 3, "ModelLoadFailed: x")])
    failing = compute_status(_observed(_deployment(ready=1), [pod]), {}, NOW)
    later = NOW + timedelta(minutes=5)
    healed = compute_status(_observed(_deployment()), failing, later)
    assert healed["lastFailure"] == failing["lastFailure"]
    times = {c["type"]: c["lastTransitionTime"] for c in healed["conditions"]}
    changed = dict.fromkeys(["Ready", "Available", "Progressing", "Degraded", "Stalled"], "2026-11-23T12:05:00Z")
    assert times == {**changed, "RolledBack": "2026-11-23T12:00:00Z"}


def test_events_only_on_meaningful_transitions() -> None:
    pod = _pod(containerStatuses=[_crash("runtime", 3, "ModelLoadFailed: x")])
    failing = compute_status(_observed(_deployment(ready=1), [pod]), {}, NOW)
    healed = compute_status(_observed(_deployment()), failing, NOW)
    assert transition_events({}, failing) == [("Warning", "ModelLoadFailed", "ModelLoadFailed: x")]
    assert transition_events(failing, failing) == []
    assert transition_events(failing, healed) == [
        ("Normal", "Ready", "2/2 replicas ready at http://resnet.team-a.svc.cluster.local"),
        ("Normal", "Recovered", "no longer ModelLoadFailed"),
    ]


V2 = Version(generation=7, template_hash="v2-hash", model_uri="pvc://models/resnet101.pt")
GPU_FULL = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available."


def _of(version: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {**pod, "metadata": {**pod["metadata"], "annotations": {"serving.modeldeploy.dev/template-hash": version}}}


def _rollout(**overrides: Any) -> Observed:
    """Version v2 rolling out over 2 replicas, with GPUs."""
    return _observed(
        overrides.pop("deployment", _deployment(replicas=2, ready=2, updated=0)),
        overrides.pop("pods", []),
        version=V2,
        gpu_resource="nvidia.com/gpu",
        **overrides,
    )


def _unschedulable(message: str = GPU_FULL) -> dict[str, Any]:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return _pod(phase="Pending", conditions=[condition])


def test_a_surge_replica_waiting_for_a_gpu_is_progress_while_the_old_version_serves() -> None:
    deployment = _deployment(replicas=3, ready=2, updated=1)
    status = compute_status(_rollout(deployment=deployment, pods=[_of("v2-hash", _unschedulable())]), {}, NOW)
    assert _conditions(status) == {
        "Ready": ("False", "WaitingForGpu"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "WaitingForGpu"),
        "Degraded": ("False", "AsExpected"),
        "Stalled": ("False", "AsExpected"),
        "RolledBack": ("False", "AsExpected"),
    }
    assert status["lastFailure"] is None


def test_no_gpu_anywhere_for_a_new_service_is_still_unschedulable() -> None:
    deployment = _deployment(replicas=2, ready=0, updated=2)
    status = compute_status(_rollout(deployment=deployment, pods=[_of("v2-hash", _unschedulable())]), {}, NOW)
    assert _conditions(status)["Degraded"] == ("True", "Unschedulable")
    assert _conditions(status)["Available"] == ("False", "MinimumReplicasUnavailable")


def test_replacing_in_place_says_so() -> None:
    status = compute_status(_rollout(deployment=_deployment(ready=1, updated=1), replacing_in_place=True), {}, NOW)
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "ReplacingInPlace")
    assert "one replica at a time (1/2 run the current spec)" in progressing["message"]


def test_one_failing_pod_of_ten_that_the_allowed_unavailability_covers_is_not_degraded() -> None:
    crashing = _of("v2-hash", _pod(containerStatuses=[_crash("runtime", 137, "Killed")]))
    observed = _rollout(
        deployment=_deployment(replicas=10, ready=9, updated=10),
        pods=[crashing],
        desired_replicas=10,
        allowed_unavailable=2,
    )
    status = compute_status(observed, {}, NOW)
    assert _conditions(status)["Ready"] == ("True", "Ready")
    assert _conditions(status)["Available"] == ("True", "MinimumReplicasAvailable")
    assert _conditions(status)["Degraded"] == ("False", "AsExpected")
    assert _conditions(status)["Stalled"] == ("False", "AsExpected")
    assert status["lastFailure"]["reason"] == "CrashLoopBackOff", "still kept as the last failure seen"

    three = [crashing] * 3
    observed = _rollout(
        deployment=_deployment(replicas=10, ready=7, updated=10), pods=three, desired_replicas=10, allowed_unavailable=2
    )
    assert _conditions(compute_status(observed, {}, NOW))["Stalled"] == ("True", "CrashLoopBackOff")


def test_failures_of_the_previous_version_do_not_count_against_the_new_one() -> None:
    old_crash = _of("v1-hash", _pod(containerStatuses=[_crash("runtime", 1)]))
    status = compute_status(_rollout(deployment=_deployment(ready=1, updated=1), pods=[old_crash]), {}, NOW)
    assert _conditions(status)["Degraded"] == ("False", "AsExpected")
    assert _conditions(status)["Progressing"] == ("True", "RollingOut")


ROLLBACK = Rollback(
    failed_version="v2-hash",
    failed_generation=7,
    reason="ModelLoadFailed",
    message="ModelLoadFailed: not a TorchScript archive",
    to_version="v1-hash",
    to_generation=5,
)


def test_a_rollback_is_reported_as_failed_while_the_previous_version_serves() -> None:
    history = [
        {
            "generation": 5,
            "templateHash": "v1-hash",
            "modelUri": "pvc://models/r50.pt",
            "outcome": "Succeeded",
            "time": "2026-11-23T11:00:00Z",
        }
    ]
    rolling_back = compute_status(
        _rollout(deployment=_deployment(replicas=3, ready=2, updated=2), rollback=ROLLBACK), {"revisions": history}, NOW
    )
    assert _conditions(rolling_back) == {
        "Ready": ("False", "RolledBack"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "RollingBack"),
        "Degraded": ("True", "ModelLoadFailed"),
        "Stalled": ("True", "ModelLoadFailed"),
        "RolledBack": ("True", "ModelLoadFailed"),
    }
    rolled_back = next(c for c in rolling_back["conditions"] if c["type"] == "RolledBack")
    assert rolled_back["message"] == (
        "generation 7 failed (ModelLoadFailed: not a TorchScript archive); rolled back to the pod "
        "template of generation 5, which serves meanwhile. Change the spec to try again."
    )
    assert rolling_back["lastFailure"] == {
        "reason": "ModelLoadFailed",
        "message": "ModelLoadFailed: not a TorchScript archive",
        "time": "2026-11-23T12:00:00Z",
    }
    assert rolling_back["revisions"] == [
        *history,
        {
            "generation": 7,
            "templateHash": "v2-hash",
            "modelUri": "pvc://models/resnet101.pt",
            "outcome": "Failed",
            "reason": "ModelLoadFailed",
            "time": "2026-11-23T12:00:00Z",
        },
    ]
    ModelDeploymentStatus.model_validate(rolling_back)

    done = compute_status(_rollout(deployment=_deployment(), rollback=ROLLBACK), rolling_back, NOW)
    assert _conditions(done)["Progressing"] == ("False", "RolledBack")
    assert _conditions(done)["Ready"] == ("False", "RolledBack"), "never Ready on an older version than the spec's"
    assert transition_events({}, rolling_back)[-1] == ("Warning", "RolledBack", rolled_back["message"])


def test_a_version_that_serves_every_replica_is_recorded_as_succeeded() -> None:
    rolling = compute_status(_rollout(deployment=_deployment(ready=1, updated=1)), {}, NOW)
    assert [(r["templateHash"], r["outcome"]) for r in rolling["revisions"]] == [("v2-hash", "RollingOut")]
    later = NOW + timedelta(minutes=1)
    done = compute_status(_rollout(deployment=_deployment()), rolling, later)
    assert done["revisions"] == [
        {
            "generation": 7,
            "templateHash": "v2-hash",
            "modelUri": "pvc://models/resnet101.pt",
            "outcome": "Succeeded",
            "time": "2026-11-23T12:01:00Z",
        }
    ]


def test_a_new_replica_waiting_for_the_gpu_an_old_one_frees_is_not_a_failure() -> None:
    observed = _rollout(
        deployment=_deployment(replicas=2, ready=1, updated=1),
        pods=[_of("v2-hash", _unschedulable())],
        replacing_in_place=True,
    )
    assert _conditions(compute_status(observed, {}, NOW))["Degraded"] == ("False", "AsExpected")


def test_a_rollback_that_cannot_happen_says_why_beside_the_failure() -> None:
    crashing = _of("v2-hash", _pod(containerStatuses=[_crash("runtime", 3, "ModelLoadFailed: x")]))
    blocked = "cannot roll back to generation 5: no ReplicaSet keeps its pod template"
    observed = _rollout(deployment=_deployment(replicas=3, updated=1), pods=[crashing], rollback_blocked=blocked)
    degraded = next(c for c in compute_status(observed, {}, NOW)["conditions"] if c["type"] == "Degraded")
    assert (degraded["reason"], degraded["message"]) == ("ModelLoadFailed", f"ModelLoadFailed: x; {blocked}")
