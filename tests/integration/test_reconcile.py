"""The operator against a real control plane with simulated GPU nodes: create, schedule, report, heal.

These ModelDeployments ask for GPUs, which this machine lacks, so their pods run on KWOK nodes and their crash loops
are simulated (pod annotations). The same failure reasons from real containers on the real node are tested in
tests/e2e/test_model_delivery_and_failures.py."""

import json
from typing import Any

GPU_MD = {
    "replicas": 2,
    "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3", "sharedMemory": "1Gi"},
    "runtime": {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}},
}


def _runtime_container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _pods(kube) -> list[dict[str, Any]]:
    import json

    result = kube.run("get", "pods", "-l", "app.kubernetes.io/instance=resnet", "-o", "json")
    return json.loads(result.stdout)["items"]


def test_create_schedules_gpus_and_reports_ready(operator, kube, md) -> None:
    kube.apply(md("resnet", **GPU_MD))
    ready = kube.wait_condition("resnet", "Ready", "True")
    assert ready["reason"] == "Ready"

    deployment = kube.get("deployment", "resnet")
    pod_spec = deployment["spec"]["template"]["spec"]
    assert _runtime_container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    service = kube.get("service", "resnet")
    assert service["spec"]["ports"][0]["port"] == 80

    pods = _pods(kube)
    assert len(pods) == 2 and all(p["spec"]["nodeName"].startswith("gpu-node-") for p in pods)

    status = kube.get("md", "resnet")["status"]
    assert status["url"] == f"http://resnet.{kube.namespace}.svc.cluster.local"
    assert status["readyReplicas"] == 2 and status["readySummary"] == "2/2"
    assert status["observedGeneration"] == kube.get("md", "resnet")["metadata"]["generation"]
    columns = kube.run("get", "md", "resnet", "--no-headers").stdout.split()
    assert columns[:5] == ["resnet", "resnet", "1", "2/2", "Ready"]
    # The operator writes the status and nothing else of the ModelDeployment: no bookkeeping annotations.
    shown = kube.run("get", "md", "resnet", "-o", "json", "--show-managed-fields").stdout
    metadata = json.loads(shown)["metadata"]
    assert not [key for key in metadata.get("annotations") or {} if "modeldeploy" in key or "kopf" in key]
    operator_writes = {
        (f["operation"], f.get("subresource"))
        for f in metadata["managedFields"]
        if f["manager"] == "modeldeploy-operator"
    }
    assert operator_writes == {("Update", "status")}

    events = kube.run(
        "get", "events", "--field-selector", "involvedObject.name=resnet,involvedObject.kind=ModelDeployment"
    ).stdout
    assert "Ready" in events
    # `kubectl wait` works without custom scripts
    kube.run("wait", "--for=condition=Ready", "md/resnet", "--timeout=5s")


def test_nine_gpus_are_unschedulable_with_the_scheduler_reason(operator, kube, md) -> None:
    kube.apply(md("huge", gpu={"count": 9}))
    condition = kube.wait_condition("huge", "Ready", "False", "Unschedulable")
    assert "nvidia.com/gpu" in condition["message"]
    status = kube.get("md", "huge")["status"]
    assert status["lastFailure"]["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in status["lastFailure"]["message"]
    assert kube.condition("huge", "Degraded")["status"] == "True"


def test_crash_looping_runtime_is_degraded_with_the_reason(operator, kube, md) -> None:
    annotations = {
        "devcluster.modeldeploy.dev/simulate": "crash-loop",
        "devcluster.modeldeploy.dev/exit-code": "3",
        "devcluster.modeldeploy.dev/message": "ModelLoadFailed: /models/mlp.pt is not a TorchScript archive",
    }
    kube.apply(md("broken", podMetadata={"annotations": annotations}))
    degraded = kube.wait_condition("broken", "Degraded", "True", "ModelLoadFailed")
    assert "not a TorchScript archive" in degraded["message"]
    assert kube.condition("broken", "Ready")["status"] == "False"


def test_generic_crash_reports_exit_code(operator, kube, md) -> None:
    annotations = {"devcluster.modeldeploy.dev/simulate": "crash-loop", "devcluster.modeldeploy.dev/exit-code": "137"}
    kube.apply(md("oom", podMetadata={"annotations": annotations}))
    degraded = kube.wait_condition("oom", "Degraded", "True", "CrashLoopBackOff")
    assert "exit code 137" in degraded["message"]


def test_drift_is_restored(operator, kube, md) -> None:
    kube.apply(md("resnet", **GPU_MD))
    kube.wait_condition("resnet", "Ready", "True")
    uid = kube.get("service", "resnet")["metadata"]["uid"]

    kube.run("delete", "service", "resnet")
    kube.wait_for(
        "service restored",
        lambda: (kube.get("service", "resnet") or {}).get("metadata", {}).get("uid") not in (None, uid),
    )

    kube.run("set", "image", "deployment/resnet", "runtime=evil:latest")
    kube.wait_for(
        "image restored",
        lambda: _runtime_container(kube.get("deployment", "resnet"))["image"] == "modeldeploy/runtime:test",
    )

    patch = '[{"op":"replace","path":"/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu","value":"4"}]'
    kube.run("patch", "deployment", "resnet", "--type=json", "-p", patch)
    kube.wait_for(
        "GPU limit restored",
        lambda: _runtime_container(kube.get("deployment", "resnet"))["resources"]["limits"]["nvidia.com/gpu"] == "1",
    )

    kube.run("scale", "deployment", "resnet", "--replicas=5")
    kube.wait_for("replicas restored", lambda: kube.get("deployment", "resnet")["spec"]["replicas"] == 2)

    kube.run("label", "deployment", "resnet", "team=vision")
    kube.run("annotate", "md", "resnet", "touch=1")  # any later reconcile must keep labels others added
    kube.wait_condition("resnet", "Ready", "True")
    assert kube.get("deployment", "resnet")["metadata"]["labels"]["team"] == "vision"


def test_kubectl_scale_and_spec_update(operator, kube, md) -> None:
    kube.apply(md("resnet", **GPU_MD))
    kube.wait_condition("resnet", "Ready", "True")

    kube.run("scale", "md/resnet", "--replicas=3")
    kube.wait_for("3 ready replicas", lambda: kube.get("md", "resnet")["status"].get("readyReplicas") == 3)
    assert kube.get("deployment", "resnet")["spec"]["replicas"] == 3

    before = {p["metadata"]["name"] for p in _pods(kube)}
    updated = md("resnet", **{**GPU_MD, "replicas": 3, "runtime": {"maxBatchSize": 8}})
    kube.apply(updated)
    generation = kube.get("md", "resnet")["metadata"]["generation"]
    kube.wait_for(
        "observedGeneration follows and the rollout finishes",
        lambda: (
            (s := kube.get("md", "resnet")["status"])["observedGeneration"] == generation
            and kube.condition("resnet", "Ready")["status"] == "True"
            and s["updatedReplicas"] == 3
        ),
    )
    env = {e["name"]: e.get("value") for e in _runtime_container(kube.get("deployment", "resnet"))["env"]}
    assert env["MODELDEPLOY_MAX_BATCH_SIZE"] == "8"
    after = {p["metadata"]["name"] for p in _pods(kube) if not p["metadata"].get("deletionTimestamp")}
    assert before.isdisjoint(after), "a pod template change rolls the pods"


def test_an_hpa_on_the_deployment_owns_its_replicas(operator, kube, md) -> None:
    kube.apply(md("resnet", **GPU_MD))
    kube.wait_condition("resnet", "Ready", "True")
    kube.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "resnet"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "resnet"},
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        }
    )
    kube.wait_for("the operator to stop owning replicas", lambda: not _owns_replicas(kube))
    handed_over = kube.get("deployment", "resnet")
    # Without metrics the HPA (minReplicas 1) would leave a reset to 1 in place: the value must survive the handover.
    assert handed_over["spec"]["replicas"] == GPU_MD["replicas"], "replicas kept, not reset to 1, on the handover"
    kube.run("scale", "deployment", "resnet", "--replicas=4")  # what the HPA controller would do
    kube.wait_for("4 ready replicas", lambda: kube.get("md", "resnet")["status"].get("readyReplicas") == 4, timeout=60)
    kube.run("annotate", "md", "resnet", "hpa=still-there", "--overwrite")
    kube.wait_condition("resnet", "Ready", "True")
    assert kube.get("deployment", "resnet")["spec"]["replicas"] == 4
    assert kube.get("md", "resnet")["status"]["readySummary"] == "4/4"

    kube.run("delete", "hpa", "resnet")
    kube.wait_for("spec.replicas back in force", lambda: kube.get("deployment", "resnet")["spec"]["replicas"] == 2)
    assert _owns_replicas(kube)


def _owns_replicas(kube) -> bool:
    shown = kube.run("get", "deployment", "resnet", "-o", "json", "--show-managed-fields").stdout
    managed = json.loads(shown)["metadata"]["managedFields"]
    ours = [entry for entry in managed if entry["manager"] == "modeldeploy-operator"]
    return any("f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {}) for entry in ours)


def test_deletion_cascades_by_garbage_collection(operator, kube, md) -> None:
    kube.apply(md("resnet", **GPU_MD))
    kube.wait_condition("resnet", "Ready", "True")
    assert "finalizers" not in kube.get("md", "resnet")["metadata"], "nothing can leave it stuck"
    kube.run("delete", "md", "resnet", "--wait=true", "--timeout=30s")
    kube.wait_for(
        "children collected", lambda: kube.get("deployment", "resnet") is None and kube.get("service", "resnet") is None
    )


def test_a_refused_update_keeps_the_working_service(operator, kube, md) -> None:
    kube.apply(md("resnet", **GPU_MD))
    kube.wait_condition("resnet", "Ready", "True")
    template = kube.get("deployment", "resnet")["spec"]["template"]

    bad_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Within", "values": ["a"]}]}]
            }
        }
    }
    kube.apply(md("resnet", **GPU_MD, scheduling={"affinity": bad_affinity}))
    degraded = kube.wait_condition("resnet", "Degraded", "True", "ApplyFailed")
    assert "Within" in degraded["message"] and "previous spec keeps serving" in degraded["message"]
    assert kube.get("deployment", "resnet")["spec"]["template"] == template
    assert kube.get("deployment", "resnet")["status"]["readyReplicas"] == 2
    warnings = kube.run("get", "events", "--field-selector", "type=Warning,involvedObject.kind=ModelDeployment").stdout
    assert "ApplyFailed" in warnings

    kube.apply(md("resnet", **GPU_MD))  # fixed: back to Ready, without a rollout
    kube.wait_condition("resnet", "Degraded", "False")
    kube.wait_condition("resnet", "Ready", "True")
    assert kube.get("deployment", "resnet")["spec"]["template"] == template
