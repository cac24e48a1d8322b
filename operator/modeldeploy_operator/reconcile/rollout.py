"""GPU-aware rolling updates: replace in place when no GPU is free for a surge replica. Pure: no I/O, no clock.

A rolling update that may take no replica down (maxUnavailable comes to 0) starts a surge replica first, which
needs GPUs no running replica holds. On a full cluster it never schedules, and the rollout would wait for its
progress deadline. Instead, once the surge replica is seen waiting for a GPU, the Deployment replaces one replica
at a time (maxSurge 0, maxUnavailable 1) until no replica of the old version is left, then gets the spec's strategy
back. The Deployment's own strategy is the memory of that switch, so it survives operator restarts.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy_operator.api.v1alpha1 import ModelDeploymentSpec
from modeldeploy_operator.manifests.deployment import template_hash
from modeldeploy_operator.reconcile.workload import live_pods, waits_for_gpu


def replace_in_place(
    spec: ModelDeploymentSpec,
    desired_replicas: int,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
) -> bool:
    """Whether the Deployment should replace its replicas one at a time, without a surge replica, for now."""
    if spec.gpu.count == 0 or spec.rollout.when_no_spare_gpu != "ReplaceInPlace":
        return False
    if spec.rollout.allowed_unavailable(desired_replicas) > 0:
        return False  # the controller makes room by itself: a rollout never waits for a spare GPU
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    old_replicas_left = int(status.get("replicas") or 0) > int(status.get("updatedReplicas") or 0)
    new_pods = live_pods(pods, template_hash(deployment))
    waiting = any(waits_for_gpu(pod, spec.gpu.resource_name) for pod in new_pods)
    if _replaces_in_place(deployment):
        # Switched earlier in this rollout: keep it while old replicas remain, and while the last new replica
        # waits for the GPU the last old one is still freeing (the scheduler counts it until the pod is gone).
        # Switching back before then would read that wait as Unschedulable; switching back as soon as it is
        # scheduled, in the reconcile that sees it, keeps Ready from flapping.
        return old_replicas_left or waiting
    # No replica of an older version left to make room (or there never was one: no GPU for a new service is
    # Unschedulable).
    return old_replicas_left and waiting


def _replaces_in_place(deployment: Mapping[str, Any]) -> bool:
    rolling_update = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return rolling_update.get("maxSurge") in (0, "0%") and rolling_update.get("maxUnavailable") == 1
