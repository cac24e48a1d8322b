"""Drift detection: apply when the child is missing, the spec changed, or someone took over or removed one of our
fields; never at steady state, and never for what a mutating webhook did to our own apply.

The managedFields are the real apiserver's (tests/unit/data/managed_fields.json says how they were captured)."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from apiserver_fields import applied_fields
from modeldeploy_operator.manifests import build_deployment, build_service
from modeldeploy_operator.manifests.deployment import BuildOptions
from modeldeploy_operator.reconcile.drift import needs_apply, own_fields, slim_managed_fields, stamp

OPTIONS = BuildOptions(default_runtime_image="runtime:1")
CAPTURED: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "managed_fields.json").read_text())["fieldsV1"]
CONTROLLER_ENTRY = {
    "manager": "kube-controller-manager",
    "operation": "Update",
    "subresource": "status",
    "apiVersion": "apps/v1",
    "fieldsType": "FieldsV1",
    "fieldsV1": {"f:status": {"f:replicas": {}}},
}


def _as_served(manifest: dict[str, Any], captured: str) -> dict[str, Any]:
    """What the apiserver hands back: our fields as `captured`, canonical quantities, defaults, other writers'
    fields and values, a webhook's mutations."""
    live = copy.deepcopy(manifest)
    ours = {"manager": "modeldeploy-operator", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1"}
    fields = CAPTURED[captured]
    live["metadata"]["managedFields"] = [CONTROLLER_ENTRY] + ([{**ours, "fieldsV1": fields}] if fields else [])
    live["metadata"]["labels"]["added-by-someone-else"] = "yes"
    live["metadata"]["resourceVersion"] = "42"
    live["status"] = {"replicas": 2}
    if manifest["kind"] == "Deployment":
        pod = live["spec"]["template"]["spec"]
        pod["dnsPolicy"] = "ClusterFirst"
        runtime = pod["containers"][0]
        runtime["resources"]["requests"]["memory"] = "8589934592"
        runtime["terminationMessagePath"] = "/dev/termination-log"
        runtime["env"].reverse()
    return live


def _stamped_deployment(make_md, gpu_spec, options: BuildOptions = OPTIONS, **changes: Any) -> dict[str, Any]:
    spec = {**copy.deepcopy(gpu_spec), **changes}
    return stamp(build_deployment(make_md(spec), options))


def test_missing_child_is_applied(make_md, gpu_spec) -> None:
    assert needs_apply(_stamped_deployment(make_md, gpu_spec), None) == "missing"


def test_steady_state_needs_nothing(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    assert needs_apply(desired, _as_served(desired, "deployment")) is None


def test_what_a_webhook_did_to_our_apply_is_not_drift(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    live = _as_served(desired, "deployment after a webhook mutated our apply")
    runtime = live["spec"]["template"]["spec"]["containers"][0]
    runtime["image"] = "runtime@sha256:682590e5e748f510528aef9ad5c6d018215e77d51319d4fc7ceee5a4ee4f281d"
    runtime["imagePullPolicy"] = "Always"
    runtime["env"].append({"name": "INJECTED_BY_WEBHOOK", "value": "true"})
    runtime["resources"]["limits"]["cpu"] = "4"
    assert needs_apply(desired, live) is None


def test_spec_change_is_applied_even_when_we_still_own_every_field(make_md, gpu_spec) -> None:
    before = _stamped_deployment(make_md, gpu_spec)
    without_shm = _stamped_deployment(make_md, gpu_spec, gpu={"count": 1, "product": "NVIDIA-H100-80GB-HBM3"})
    assert needs_apply(without_shm, _as_served(before, "deployment")) == "changed"


@pytest.mark.parametrize(
    "edit", ["image", "gpu limit", "replicas", "label", "tolerations", "env removed", "managed fields cleared"]
)
def test_a_field_someone_took_over_or_removed_is_drift(make_md, gpu_spec, edit: str) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    assert needs_apply(desired, _as_served(desired, f"deployment after {edit}")) == "drifted"


@pytest.mark.parametrize("edit", ["same value", "unrelated annotation"])
def test_writes_that_leave_our_fields_alone_are_not_drift(make_md, gpu_spec, edit: str) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    assert needs_apply(desired, _as_served(desired, f"deployment after {edit}")) is None


def test_replicas_an_autoscaler_took_are_not_ours_to_restore(make_md, gpu_spec) -> None:
    """With an HPA the manifest leaves replicas out; the hash is the one we last applied (it had them)."""
    applied = _stamped_deployment(make_md, gpu_spec)
    autoscaled = _stamped_deployment(make_md, gpu_spec, options=BuildOptions("runtime:1", True))
    live = _as_served(autoscaled, "deployment after replicas")
    assert "replicas" not in autoscaled["spec"]
    assert needs_apply(autoscaled, live) is None
    assert needs_apply(applied, _as_served(applied, "deployment after replicas")) == "drifted"


def test_child_being_garbage_collected_is_left_alone(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    live = _as_served(desired, "deployment after replicas")
    live["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert needs_apply(desired, live) is None


def test_service_port_edit_is_drift(make_md, gpu_spec) -> None:
    desired = stamp(build_service(make_md(gpu_spec)))
    assert needs_apply(desired, _as_served(desired, "service")) is None
    assert needs_apply(desired, _as_served(desired, "service after port")) == "drifted"


def test_snapshots_keep_only_our_fields_and_decide_as_the_object_does(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    for captured, reason in (("deployment", None), ("deployment after image", "drifted")):
        live = _as_served(desired, captured)
        slim = slim_managed_fields(live)
        assert "managedFields" not in slim["metadata"] and own_fields(slim) == CAPTURED[captured]
        assert needs_apply(desired, slim) == needs_apply(desired, live) == reason
        assert live["metadata"]["managedFields"][0] == CONTROLLER_ENTRY, "the object itself is left as it was"
    cleared = slim_managed_fields(_as_served(desired, "deployment after managed fields cleared"))
    assert own_fields(cleared) is None and needs_apply(desired, cleared) == "drifted"
    assert slim_managed_fields({"metadata": {"name": "x"}}) == {"metadata": {"name": "x"}}


def test_the_fakes_record_our_fields_as_the_apiserver_does(make_md, gpu_spec) -> None:
    assert applied_fields(_stamped_deployment(make_md, gpu_spec)) == CAPTURED["deployment"]
    assert applied_fields(stamp(build_service(make_md(gpu_spec)))) == CAPTURED["service"]
