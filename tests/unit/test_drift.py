"""Drift detection: apply when the spec changed or someone changed our fields; never at steady state."""

import copy
from typing import Any

from modeldeploy_operator.manifests import build_deployment, build_service
from modeldeploy_operator.manifests.deployment import BuildOptions
from modeldeploy_operator.reconcile.drift import needs_apply, stamp

OPTIONS = BuildOptions(default_runtime_image="runtime:1")


def _as_served(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver hands back: canonical quantities, defaults, and fields of other writers."""
    live = copy.deepcopy(manifest)
    live["metadata"]["labels"]["added-by-someone-else"] = "yes"
    live["metadata"]["resourceVersion"] = "42"
    pod = live["spec"]["template"]["spec"]
    pod["dnsPolicy"] = "ClusterFirst"
    runtime = pod["containers"][0]
    runtime["resources"]["requests"]["cpu"] = "500m"  # the user wrote 0.5
    runtime["terminationMessagePath"] = "/dev/termination-log"
    runtime["env"].reverse()
    pod["schedulerName"] = "default-scheduler"
    live["status"] = {"replicas": 2}
    return live


def _stamped_deployment(make_md, gpu_spec, **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(gpu_spec)
    spec["runtime"]["resources"]["requests"]["cpu"] = "0.5"
    spec.update(changes)
    return stamp(build_deployment(make_md(spec), OPTIONS))


def test_missing_child_is_applied(make_md, gpu_spec) -> None:
    assert needs_apply(_stamped_deployment(make_md, gpu_spec), None) == "missing"


def test_steady_state_needs_nothing(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    assert needs_apply(desired, _as_served(desired)) is None


def test_spec_change_is_applied_even_when_live_still_satisfies_it(make_md, gpu_spec) -> None:
    before = _stamped_deployment(make_md, gpu_spec)
    without_shm = _stamped_deployment(make_md, gpu_spec, gpu={"count": 1, "product": "NVIDIA-H100-80GB-HBM3"})
    assert needs_apply(without_shm, _as_served(before)) == "changed"


def test_edits_of_our_fields_are_drift(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    edits = {
        "image": lambda live: live["spec"]["template"]["spec"]["containers"][0].update(image="evil:latest"),
        "gpu limit": lambda live: live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(
            {"nvidia.com/gpu": "4"}
        ),
        "replicas": lambda live: live["spec"].update(replicas=5),
        "scaled to zero": lambda live: live["spec"].update(replicas=0),
        "our label": lambda live: live["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
        "toleration removed": lambda live: live["spec"]["template"]["spec"].pop("tolerations"),
    }
    for what, edit in edits.items():
        live = _as_served(desired)
        edit(live)
        assert needs_apply(desired, live) == "drifted", what


def test_replicas_zero_in_spec_is_compared_too(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec, replicas=0)
    live = _as_served(desired)
    assert needs_apply(desired, live) is None
    live["spec"]["replicas"] = 3
    assert needs_apply(desired, live) == "drifted"


def test_child_being_garbage_collected_is_left_alone(make_md, gpu_spec) -> None:
    desired = _stamped_deployment(make_md, gpu_spec)
    live = _as_served(desired)
    live["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    live["spec"]["replicas"] = 0
    assert needs_apply(desired, live) is None


def test_service_port_edit_is_drift(make_md, gpu_spec) -> None:
    desired = stamp(build_service(make_md(gpu_spec)))
    live = _as_served_service(desired)
    assert needs_apply(desired, live) is None
    live["spec"]["ports"][0]["port"] = 9999
    assert needs_apply(desired, live) == "drifted"


def _as_served_service(manifest: dict[str, Any]) -> dict[str, Any]:
    live = copy.deepcopy(manifest)
    live["spec"]["clusterIP"] = "10.96.0.17"
    live["spec"]["sessionAffinity"] = "None"
    return live
