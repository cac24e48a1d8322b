"""Model updates on a real control plane: GPU-aware rollouts, automatic rollback, revision history, and what the
status (and kstatus and Argo CD reading it) says at each step.

Every change of the objects is recorded from `kubectl get --watch` while an update runs, so what happened in
between (how many replicas served, which reasons the status went through) is asserted without timing anything.
"""

import json
from typing import Any

from modeldeploy_devcluster.kwok import EXIT_CODE_ANNOTATION, MESSAGE_ANNOTATION, SIMULATE_ANNOTATION, Simulation
from watching import watching

TEMPLATE_HASH = "serving.modeldeploy.dev/template-hash"
GPU_MD = {
    "replicas": 2,
    "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"},
    "model": {"uri": "file:///models/resnet50.pt"},
}
# Two replicas of eight GPUs take every GPU of the devcluster (two nodes of eight): no room for a surge replica.
FULL_CLUSTER_MD = {"replicas": 2, "gpu": {"count": 8}, "model": {"uri": "file:///models/llama-70b.pt"}}
LOAD_FAILURE = "ModelLoadFailed: /mnt/models/resnet101.pt is not a TorchScript archive"
CANNOT_LOAD = {
    SIMULATE_ANNOTATION: Simulation.CRASH_LOOP.value,
    EXIT_CODE_ANNOTATION: "3",
    MESSAGE_ANNOTATION: LOAD_FAILURE,
}


def _conditions(md: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in (md.get("status") or {}).get("conditions") or []}


def _version(obj: dict[str, Any]) -> str | None:
    template = (obj.get("spec") or {}).get("template") or obj
    return ((template.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_HASH)


def _health(kube: Any, health: Any, name: str) -> tuple[str, str]:
    objects = json.dumps({"kind": "List", "items": [kube.get("md", name)]})
    return health.verdicts(objects, "kstatus")[name]["status"], health.verdicts(objects, "argocd")[name]["status"]


def _readings(health: Any, versions: list[dict[str, Any]], tool: str) -> list[str]:
    """What `tool` (kstatus or argocd) said of each recorded version in turn, repeats collapsed."""
    renamed = [{**obj, "metadata": {**obj["metadata"], "name": f"v{index}"}} for index, obj in enumerate(versions)]
    verdicts = health.verdicts(json.dumps({"kind": "List", "items": renamed}), tool)
    readings = [verdicts[f"v{index}"]["status"] for index in range(len(versions))]
    return [reading for index, reading in enumerate(readings) if index == 0 or readings[index - 1] != reading]


def _rolled_out(kube: Any, name: str, generation: int) -> bool:
    md = kube.get("md", name)
    status = md.get("status") or {}
    return status.get("observedGeneration") == generation and _conditions(md).get("Ready") == ("True", "Ready")


def _wait_for_every_gpu_free(kube: Any) -> None:
    """Earlier tests' namespaces go asynchronously: wait until no pod anywhere holds or waits for a GPU."""

    def gpus_asked() -> int:
        pods = json.loads(kube.cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
        return sum(
            int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
            for pod in pods
            if pod["status"].get("phase") not in ("Succeeded", "Failed")
            for container in pod["spec"]["containers"]
        )

    kube.wait_for("every GPU of the cluster to be free", lambda: gpus_asked() == 0, timeout=180)


def test_an_update_on_a_full_cluster_replaces_one_replica_at_a_time(operator, kube, md, health) -> None:
    _wait_for_every_gpu_free(kube)
    kube.apply(md("llm", **FULL_CLUSTER_MD))
    kube.wait_condition("llm", "Ready", "True")

    with watching(kube, "md", "llm") as statuses, watching(kube, "deployment", "llm") as deployments:
        kube.apply(md("llm", **FULL_CLUSTER_MD, runtime={"maxBatchSize": 8}))
        generation = kube.get("md", "llm")["metadata"]["generation"]
        kube.wait_for("the rollout to finish", lambda: _rolled_out(kube, "llm", generation), timeout=120)
        kube.wait_for(
            "the spec's strategy back",
            lambda: kube.get("deployment", "llm")["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1,
        )

    seen = [_conditions(obj) for obj in statuses.objects]
    in_place = [c for c in seen if c.get("Progressing") == ("True", "ReplacingInPlace")]
    assert in_place, f"never replaced in place: {seen}"
    failing = [c for c in seen if c["Degraded"][0] != "False" or c["Stalled"][0] != "False"]
    assert not failing, f"waiting is not failing: {failing}"
    served = [int((d.get("status") or {}).get("availableReplicas") or 0) for d in deployments.objects]
    assert min(served) == 1, f"one replica at a time, never none: {served}"
    strategies = {json.dumps(d["spec"]["strategy"]["rollingUpdate"], sort_keys=True) for d in deployments.objects}
    assert '{"maxSurge": 0, "maxUnavailable": 1}' in strategies
    assert _readings(health, statuses.objects, "kstatus") == ["Current", "InProgress", "Current"]
    assert _readings(health, statuses.objects, "argocd") == ["Healthy", "Progressing", "Healthy"]
    revisions = kube.get("md", "llm")["status"]["revisions"]
    assert [(r["generation"], r["outcome"]) for r in revisions] == [(1, "Succeeded"), (generation, "Succeeded")]


def test_a_surge_replica_that_waits_for_a_gpu_is_progress_not_failure(operator, kube, md, health) -> None:
    _wait_for_every_gpu_free(kube)
    waiting = {**FULL_CLUSTER_MD, "rollout": {"whenNoSpareGpu": "Wait"}}
    kube.apply(md("llm", **waiting))
    kube.wait_condition("llm", "Ready", "True")

    kube.apply(md("llm", **waiting, runtime={"maxBatchSize": 8}))
    progressing = kube.wait_condition("llm", "Progressing", "True", "WaitingForGpu")
    assert "the previous version serves all 2 replicas meanwhile" in progressing["message"]
    conditions = _conditions(kube.get("md", "llm"))
    assert conditions["Available"] == ("True", "MinimumReplicasAvailable")
    assert conditions["Degraded"] == ("False", "AsExpected") and conditions["Stalled"] == ("False", "AsExpected")
    assert conditions["Ready"] == ("False", "WaitingForGpu")
    assert _health(kube, health, "llm") == ("InProgress", "Progressing")


def test_a_model_that_fails_to_load_is_rolled_back_and_the_service_keeps_serving(operator, kube, md, health) -> None:
    kube.apply(md("resnet", **GPU_MD))
    kube.wait_condition("resnet", "Ready", "True")
    good = _version(kube.get("deployment", "resnet"))

    broken = {**GPU_MD, "model": {"uri": "file:///models/resnet101.pt"}, "podMetadata": {"annotations": CANNOT_LOAD}}
    with (
        watching(kube, "pods", "-l", "app.kubernetes.io/instance=resnet") as pods,
        watching(kube, "deployment", "resnet") as deployments,
        watching(kube, "md", "resnet") as statuses,
    ):
        kube.apply(md("resnet", **broken))
        kube.wait_condition("resnet", "Progressing", "False", "RolledBack")

    bad = next(_version(p) for p in pods.objects if _version(p) != good)
    failed_at = next(at for at, pod in pods.versions if _version(pod) == bad and _crash_looping(pod))
    back_at = next(at for at, obj in statuses.versions if _conditions(obj).get("Progressing", ("",))[1] == "RolledBack")
    print(f"\nfrom the failure visible to the rollback Ready: {back_at - failed_at:.2f}s")
    served = [int((d.get("status") or {}).get("availableReplicas") or 0) for d in deployments.objects]
    assert min(served) == 2, f"both replicas of the good version served throughout: {served}"

    resnet = kube.get("md", "resnet")
    assert resnet["spec"]["model"]["uri"] == "file:///models/resnet101.pt", "the spec stays as written"
    assert _version(kube.get("deployment", "resnet")) == good
    assert _conditions(resnet) == {
        "Ready": ("False", "RolledBack"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("False", "RolledBack"),
        "Degraded": ("True", "ModelLoadFailed"),
        "Stalled": ("True", "ModelLoadFailed"),
        "RolledBack": ("True", "ModelLoadFailed"),
    }
    assert resnet["status"]["lastFailure"]["message"] == LOAD_FAILURE
    assert [(r["generation"], r["outcome"], r.get("reason")) for r in resnet["status"]["revisions"]] == [
        (1, "Succeeded", None),
        (2, "Failed", "ModelLoadFailed"),
    ]
    # An older version than the spec asks for is never a success, at any step.
    assert _readings(health, statuses.objects, "kstatus") == ["Current", "InProgress", "Failed"]
    assert _readings(health, statuses.objects, "argocd") == ["Healthy", "Progressing", "Degraded"]
    warnings = kube.run("get", "events", "--field-selector", "type=Warning,involvedObject.kind=ModelDeployment").stdout
    assert "RolledBack" in warnings

    # No retry loop: a spec change that keeps the failed template (a scale) is applied on the good template.
    with watching(kube, "pods", "-l", "app.kubernetes.io/instance=resnet") as later_pods:
        kube.run("scale", "md/resnet", "--replicas=3")
        kube.wait_for(
            "the scale acted on, still rolled back",
            lambda: (
                kube.get("md", "resnet")["status"]["observedGeneration"] == 3
                and kube.get("deployment", "resnet")["status"].get("availableReplicas") == 3
            ),
        )
    assert {_version(p) for p in later_pods.objects} == {good}, "the failed template was not tried again"
    assert _version(kube.get("deployment", "resnet")) == good

    # A fixed spec rolls out and the rollback is over.
    kube.apply(md("resnet", **{**GPU_MD, "replicas": 3, "model": {"uri": "file:///models/resnet101-fixed.pt"}}))
    kube.wait_for("the fixed spec Ready", lambda: _rolled_out(kube, "resnet", 4))
    resnet = kube.get("md", "resnet")
    assert _conditions(resnet)["RolledBack"] == ("False", "AsExpected")
    assert [(r["generation"], r["outcome"]) for r in resnet["status"]["revisions"]] == [
        (1, "Succeeded"),
        (2, "Failed"),
        (4, "Succeeded"),
    ]
    assert _health(kube, health, "resnet") == ("Current", "Healthy")


def _crash_looping(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any((s.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff" for s in statuses)


def test_with_automatic_rollback_off_a_failed_update_stays_and_says_so(operator, kube, md) -> None:
    manual = {**GPU_MD, "rollout": {"autoRollback": False}}
    kube.apply(md("resnet", **manual))
    kube.wait_condition("resnet", "Ready", "True")
    good = _version(kube.get("deployment", "resnet"))

    kube.apply(md("resnet", **manual, podMetadata={"annotations": CANNOT_LOAD}))
    kube.wait_condition("resnet", "Stalled", "True", "ModelLoadFailed")
    conditions = _conditions(kube.get("md", "resnet"))
    assert conditions["RolledBack"] == ("False", "AsExpected")
    assert conditions["Available"] == ("True", "MinimumReplicasAvailable"), "the old replicas still serve"
    assert _version(kube.get("deployment", "resnet")) != good
