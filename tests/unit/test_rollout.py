"""GPU-aware rollouts: replace in place only when a surge replica waits for a GPU and nothing else makes room."""

from typing import Any

import pytest
from modeldeploy_operator.api.v1alpha1 import ModelDeploymentSpec, RolloutSpec, resolve_int_or_percent
from modeldeploy_operator.reconcile.rollout import replace_in_place

GPU_FULL = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available."


def _spec(replicas: int = 2, gpus: int = 8, **rollout: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": "file:///m.pt"}, "replicas": replicas, "gpu": {"count": gpus}, "rollout": rollout}
    )


def _deployment(in_place: bool = False, complete: bool = False) -> dict[str, Any]:
    rolling_update = {"maxSurge": 0, "maxUnavailable": 1} if in_place else {"maxSurge": 1, "maxUnavailable": "25%"}
    updated = 2 if complete else 1
    return {
        "metadata": {"generation": 3},
        "spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update},
            "template": {"metadata": {"annotations": {"serving.modeldeploy.dev/template-hash": "v2"}}},
        },
        "status": {
            "observedGeneration": 3,
            "replicas": 2 if complete else 3,
            "updatedReplicas": updated,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }


def _waiting(version: str = "v2", message: str = GPU_FULL) -> dict[str, Any]:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    annotations = {"serving.modeldeploy.dev/template-hash": version}
    return {"metadata": {"name": "p", "annotations": annotations}, "status": {"conditions": [condition]}}


def test_a_surge_replica_waiting_for_a_gpu_switches_to_replacing_in_place() -> None:
    assert replace_in_place(_spec(), 2, _deployment(), [_waiting()])


def test_the_switch_lasts_until_the_rollout_completes() -> None:
    assert replace_in_place(_spec(), 2, _deployment(in_place=True), []), "the surge pod is gone, the rollout is not"
    assert not replace_in_place(_spec(), 2, _deployment(in_place=True, complete=True), [])


def test_the_switch_lasts_while_the_last_new_replica_waits_for_the_gpu_an_old_one_frees() -> None:
    assert replace_in_place(_spec(), 2, _deployment(in_place=True, complete=True), [_waiting()])
    assert not replace_in_place(_spec(), 2, _deployment(in_place=True, complete=True), [_waiting(version="v1")])


@pytest.mark.parametrize(
    ("spec", "pods", "why"),
    [
        (_spec(), [], "nothing waits"),
        (_spec(), [_waiting(version="v1")], "an old version's pod"),
        (_spec(), [_waiting(message="0/2 nodes are available: 2 node(s) didn't match Pod's node affinity")], "no GPU"),
        (_spec(whenNoSpareGpu="Wait"), [_waiting()], "the user would rather wait"),
        (_spec(maxUnavailable=1), [_waiting()], "the controller makes room by itself"),
        (_spec(gpus=0), [_waiting()], "no GPUs"),
    ],
)
def test_no_switch(spec: ModelDeploymentSpec, pods: list[dict[str, Any]], why: str) -> None:
    assert not replace_in_place(spec, 2, _deployment(), pods), why


def test_a_new_service_without_gpus_has_nothing_to_replace() -> None:
    creating = _deployment()
    creating["status"].update(replicas=2, updatedReplicas=2, readyReplicas=0, availableReplicas=0)
    assert not replace_in_place(_spec(), 2, creating, [_waiting(), _waiting()])


def test_percentages_round_as_the_deployment_controller_rounds_them() -> None:
    assert resolve_int_or_percent("25%", 3, round_up=False) == 0
    assert resolve_int_or_percent("25%", 10, round_up=False) == 2
    assert resolve_int_or_percent("25%", 3, round_up=True) == 1
    assert RolloutSpec().allowed_unavailable(3) == 0
    assert RolloutSpec(max_surge=0, max_unavailable="10%").allowed_unavailable(3) == 1, "one at a time, not none"
