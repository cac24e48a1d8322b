"""An object with a ModelDeployment's name that the operator did not create is never taken over, on a real
control plane: reported as ChildConflict and left exactly as it was, until a person removes it."""

FOREIGN_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "resnet", "labels": {"app": "legacy"}},
    "spec": {"selector": {"app": "legacy"}, "ports": [{"port": 9000, "targetPort": 9000}]},
}


def test_a_service_of_someone_else_is_left_alone_until_it_is_deleted(operator, kube, md) -> None:
    kube.apply(FOREIGN_SERVICE)
    before = kube.get("service", "resnet")
    kube.apply(md("resnet", replicas=1))

    ready = kube.wait_condition("resnet", "Ready", "False", "ChildConflict")
    assert ready["message"].startswith(
        f"Service {kube.namespace}/resnet exists and was not created for this ModelDeployment"
    )
    assert "delete or rename that Service" in ready["message"]
    assert kube.condition("resnet", "Stalled")["status"] == "True"
    warnings = kube.run("get", "events", "--field-selector", "type=Warning,involvedObject.kind=ModelDeployment").stdout
    assert "ChildConflict" in warnings
    assert kube.get("service", "resnet") == before  # not adopted: no owner reference, no label, no field of ours
    assert kube.get("deployment", "resnet") is None  # and no GPU pods for a model that cannot be reached

    kube.run("delete", "service", "resnet")
    kube.wait_condition("resnet", "Ready", "True")
    owner = kube.get("service", "resnet")["metadata"]["ownerReferences"][0]
    assert owner["uid"] == kube.get("md", "resnet")["metadata"]["uid"]
