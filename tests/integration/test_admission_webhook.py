"""The operator beside a real mutating admission webhook: the apiserver calls an HTTPS webhook on 127.0.0.1 that
pins the runtime image to a digest, forces its pull policy and injects an env var into every Deployment we apply.

What the webhook did to our own apply is not drift: at steady state, with the Deployment's events arriving, the
operator writes nothing. A person's edit of one of our fields still is, and is restored."""

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from modeldeploy_devcluster import admission_webhook
from modeldeploy_devcluster.admission_webhook import INJECTED_ENV, pinned

QUIET_SECONDS = 10


@pytest.fixture
def pinning_webhook(cluster: Any, namespace: str) -> Iterator[None]:
    """The webhook, registered for the Deployments the operator manages in this test's namespace only."""
    with admission_webhook.serving("runtime") as webhook:
        configuration = admission_webhook.webhook_configuration(
            f"pin-{namespace}",
            webhook.port,
            webhook.ca_pem,
            namespace,
            {"app.kubernetes.io/managed-by": "modeldeploy-operator"},
        )
        cluster.kubectl("apply", "-f", "-", input=json.dumps(configuration))
        try:
            yield
        finally:
            cluster.kubectl("delete", "mutatingwebhookconfiguration", configuration["metadata"]["name"])


def _runtime(kube: Any) -> dict[str, Any]:
    return kube.get("deployment", "resnet")["spec"]["template"]["spec"]["containers"][0]


def _drift_events(kube: Any) -> list[str]:
    selector = "involvedObject.kind=ModelDeployment,involvedObject.name=resnet,reason=DriftCorrected"
    events = json.loads(kube.run("get", "events", "--field-selector", selector, "-o", "json").stdout)["items"]
    return [event["message"] for event in events]


def _writes(operator: Any) -> tuple[float, float]:
    return operator.metric("modeldeploy_child_applies_total"), operator.metric("modeldeploy_status_writes_total")


def test_a_webhooks_mutation_is_not_drift_and_a_persons_edit_still_is(
    pinning_webhook, operator, kube, md, default_runtime_image
) -> None:
    kube.apply(md("resnet"))
    kube.wait_condition("resnet", "Ready", "True")
    runtime = _runtime(kube)
    assert runtime["image"] == pinned(default_runtime_image) and runtime["imagePullPolicy"] == "Always"
    assert INJECTED_ENV in runtime["env"], "the webhook mutated the Deployment we applied"

    writes = _writes(operator)
    reconciles = operator.metric("modeldeploy_reconciles_total", trigger="child")
    # Events of the Deployment, each one a reconcile of its ModelDeployment. A label, not an annotation: a
    # Deployment's annotations are part of what its generation counts, so the status would rightly follow it.
    for index in range(3):
        kube.run("label", "deployment", "resnet", f"example.com/touched={index}", "--overwrite")
    time.sleep(QUIET_SECONDS)
    assert operator.metric("modeldeploy_reconciles_total", trigger="child") >= reconciles + 3
    assert _writes(operator) == writes, "no write at steady state"
    assert _drift_events(kube) == []

    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "example.com/other:1"}]
    kube.run("patch", "deployment", "resnet", "--type=json", "-p", json.dumps(patch))
    kube.wait_for("the image restored", lambda: _runtime(kube)["image"] == pinned(default_runtime_image))
    kube.wait_for("a DriftCorrected event", lambda: _drift_events(kube))
    assert _drift_events(kube) == ["restored Deployment resnet (drifted)"]
    assert operator.metric("modeldeploy_child_applies_total", kind="Deployment", reason="drifted") == 1

    restored = _writes(operator)
    time.sleep(QUIET_SECONDS)
    assert _writes(operator)[0] == restored[0], "restored once, then quiet again"
