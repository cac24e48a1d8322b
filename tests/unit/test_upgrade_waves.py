"""Operator upgrades in waves: where a template change comes from, who may roll it, and what the reconciler applies
and reports while a ModelDeployment waits."""

import copy
from datetime import UTC, datetime
from typing import Any

from apiserver_fields import as_applied
from fake_cluster import FakeCluster
from modeldeploy_operator.manifests import build_deployment
from modeldeploy_operator.manifests.deployment import BuildOptions, template_hash
from modeldeploy_operator.reconcile import upgrade_waves
from modeldeploy_operator.reconcile.reconciler import Children, Reconciler
from modeldeploy_operator.reconcile.status import Observed, compute_status
from modeldeploy_operator.reconcile.upgrade_waves import (
    TemplateChange,
    UpgradeWaves,
    marked,
    spec_fingerprint,
    template_change,
)

BUILT_FROM = "serving.modeldeploy.dev/built-from-spec"
CHANGED_BY = "serving.modeldeploy.dev/template-changed-by"
OLD, NEW = "runtime:1", "runtime:2"


def _running(make_md, spec: dict[str, Any], image: str, **annotations: str) -> dict[str, Any]:
    """The Deployment as an operator with default image `image` left it, rolled out and Ready."""
    deployment = build_deployment(make_md(spec), BuildOptions(image))
    deployment["metadata"]["annotations"] = annotations
    deployment["metadata"].update(generation=1, resourceVersion="10")
    replicas = spec["replicas"]
    deployment["status"] = {
        "observedGeneration": 1,
        **dict.fromkeys(("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"), replicas),
    }
    return deployment


def test_the_fingerprint_leaves_the_replica_count_out(make_md, gpu_spec) -> None:
    scaled = make_md({**gpu_spec, "replicas": 7}).spec
    assert spec_fingerprint(make_md(gpu_spec).spec) == spec_fingerprint(scaled)
    assert spec_fingerprint(make_md({**gpu_spec, "model": {"uri": "pvc://models/other.pt"}}).spec) != spec_fingerprint(
        scaled
    )


def test_a_new_template_from_the_same_spec_is_the_operators_change(make_md, gpu_spec) -> None:
    fingerprint = spec_fingerprint(make_md(gpu_spec).spec)
    live = _running(make_md, gpu_spec, OLD, **{BUILT_FROM: fingerprint})
    new = str(template_hash(build_deployment(make_md(gpu_spec), BuildOptions(NEW))))
    assert template_change(live, new, fingerprint, 1, 1) is TemplateChange.OPERATOR
    assert template_change(live, str(template_hash(live)), fingerprint, 1, 1) is TemplateChange.NONE
    assert template_change(None, new, fingerprint, 1, None) is TemplateChange.NONE
    assert template_change(live, new, "another spec", 2, 1) is TemplateChange.SPEC


def test_without_a_fingerprint_the_status_tells_whether_the_spec_changed(make_md, gpu_spec) -> None:
    """A Deployment written by an operator version that recorded no fingerprint."""
    live = _running(make_md, gpu_spec, OLD)
    fingerprint = spec_fingerprint(make_md(gpu_spec).spec)
    assert template_change(live, "new", fingerprint, generation=3, observed_generation=3) is TemplateChange.OPERATOR
    assert template_change(live, "new", fingerprint, generation=4, observed_generation=3) is TemplateChange.SPEC


def test_a_rolled_back_deployment_is_left_to_the_rollback(make_md, gpu_spec) -> None:
    fingerprint = spec_fingerprint(make_md(gpu_spec).spec)
    live = _running(make_md, gpu_spec, OLD, **{BUILT_FROM: fingerprint, "serving.modeldeploy.dev/rolled-back": "{}"})
    assert template_change(live, "new", fingerprint, 1, 1) is TemplateChange.NONE


def test_the_deployment_remembers_who_changed_its_template_last(make_md, gpu_spec) -> None:
    desired = build_deployment(make_md(gpu_spec), BuildOptions(NEW))
    live = _running(make_md, gpu_spec, OLD, **{CHANGED_BY: "operator"})
    annotations = marked(desired, "fp", TemplateChange.SPEC, live)["metadata"]["annotations"]
    assert (annotations[BUILT_FROM], annotations[CHANGED_BY]) == ("fp", "spec")
    assert marked(desired, "fp", TemplateChange.NONE, live)["metadata"]["annotations"][CHANGED_BY] == "operator"
    assert marked(desired, "fp", TemplateChange.NONE, None)["metadata"]["annotations"][CHANGED_BY] == "spec"
    assert "annotations" not in desired["metadata"], "the built manifest is left as it was"


def test_only_an_unfinished_rollout_of_an_operator_change_takes_a_place(make_md, gpu_spec) -> None:
    done = _running(make_md, gpu_spec, NEW, **{CHANGED_BY: "operator"})
    assert not upgrade_waves.rolls_operator_change(done)
    rolling = copy.deepcopy(done)
    rolling["status"]["updatedReplicas"] = 1
    assert upgrade_waves.rolls_operator_change(rolling)
    rolling["metadata"]["annotations"][CHANGED_BY] = "spec"
    assert not upgrade_waves.rolls_operator_change(rolling) and not upgrade_waves.rolls_operator_change(None)


async def test_at_most_size_roll_and_a_freed_place_wakes_the_first_waiting() -> None:
    waves = UpgradeWaves(size=2)
    assert waves.admit("a", ("ns", "a")) and waves.admit("b", ("ns", "b"))
    assert not waves.admit("c", ("ns", "c")) and not waves.admit("d", ("ns", "d"))
    assert (waves.rolling, waves.waiting) == (2, 2)
    assert waves.admit("a", ("ns", "a")), "one rolling already keeps its place"
    waves.observe("a", ("ns", "a"), rolling=True, waiting=False)
    assert waves.rolling == 2
    waves.observe("a", ("ns", "a"), rolling=False, waiting=False)
    assert await waves.next_woken() == ("ns", "c")
    assert waves.admit("c", ("ns", "c")) and not waves.admit("d", ("ns", "d"))
    waves.forget("b")
    assert await waves.next_woken() == ("ns", "d")


async def test_one_that_no_longer_waits_leaves_the_queue_and_its_place_goes_to_the_next() -> None:
    waves = UpgradeWaves(size=1)
    assert waves.admit("a", ("ns", "a"))
    assert not waves.admit("b", ("ns", "b")) and not waves.admit("c", ("ns", "c"))
    waves.observe("b", ("ns", "b"), rolling=False, waiting=False)  # its spec changed: it rolls as a spec change
    waves.observe("a", ("ns", "a"), rolling=False, waiting=False)
    assert await waves.next_woken() == ("ns", "c")


def test_a_restarted_operator_counts_the_rollouts_its_predecessor_started(make_md, gpu_spec) -> None:
    rolling = _running(make_md, gpu_spec, NEW, **{CHANGED_BY: "operator"})
    rolling["status"]["updatedReplicas"] = 1
    done = _running(make_md, {**gpu_spec, "replicas": 1}, NEW, **{CHANGED_BY: "operator"})
    waves = UpgradeWaves(size=1)
    waves.prime([done, None, rolling])
    assert waves.rolling == 1 and not waves.admit("b", ("team-a", "b"))
    waves.observe("uid-1", ("team-a", "resnet"), rolling=False, waiting=False)
    assert waves.admit("b", ("team-a", "b"))
    waves.prime([rolling])
    assert waves.rolling == 1, "primed once, then kept up to date by the reconciles"


def _body(spec: dict[str, Any], name: str, generation: int = 1) -> dict[str, Any]:
    metadata = {"name": name, "namespace": "team-a", "uid": f"uid-{name}", "generation": generation}
    metadata["creationTimestamp"] = "2026-12-01T10:00:00Z"
    return {"metadata": metadata, "spec": spec, "status": {"observedGeneration": 1}}


def _children(body: dict[str, Any], deployment: dict[str, Any]) -> Children:
    """`deployment` as the watches show it under `body`: controlled by that ModelDeployment (the reconciler never
    applies over a child another one controls)."""
    owned = copy.deepcopy(deployment)
    (owner,) = owned["metadata"]["ownerReferences"]
    owner.update(name=body["metadata"]["name"], uid=body["metadata"]["uid"])
    return Children(deployment=owned)


async def test_the_second_model_waits_for_the_first_and_a_spec_change_never_does(make_md, gpu_spec) -> None:
    spec = {**gpu_spec, "rollout": {"autoRollback": False}}
    live = as_applied(_running(make_md, spec, OLD))  # by an operator version that recorded no fingerprint
    api = FakeCluster()
    reconciler = Reconciler(api, NEW, "monitoring", upgrade_wave_size=1)

    first_body = _body(spec, "first")
    await reconciler.reconcile(first_body, _children(first_body, live), "spec")
    (first,) = api.applied("Deployment")
    assert first["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    assert first["metadata"]["annotations"][CHANGED_BY] == "operator"

    api.calls.clear()
    second_body = _body(spec, "second")
    await reconciler.reconcile(second_body, _children(second_body, live), "spec")
    assert api.applied("Deployment") == [], "the running Deployment is left alone"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in api.made("write_status")[-1]["conditions"]}
    assert conditions["Progressing"] == ("True", "WaitingForUpgradeWave")
    assert conditions["Ready"] == ("True", "Ready") and conditions["Degraded"] == ("False", "AsExpected")

    # A Deployment this operator version wrote says which spec it was built from: a scale changes nothing there.
    fingerprinted = as_applied(_running(make_md, spec, OLD, **{BUILT_FROM: spec_fingerprint(make_md(spec).spec)}))
    scale = _body({**spec, "replicas": 3}, "second", generation=2)
    await reconciler.reconcile(scale, _children(scale, fingerprinted), "spec")
    (scaled,) = api.applied("Deployment")
    assert scaled["spec"]["replicas"] == 3, "a scale is never held back"
    assert template_hash(scaled) == template_hash(live), "but the running template is kept"
    assert scaled["metadata"]["annotations"][CHANGED_BY] == "spec"

    api.calls.clear()
    edited = {**spec, "model": {"uri": "pvc://models/resnet101.pt"}}
    third_body = _body(edited, "third", generation=2)
    await reconciler.reconcile(third_body, _children(third_body, live), "spec")
    (rolled,) = api.applied("Deployment")
    assert rolled["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    assert rolled["metadata"]["annotations"][CHANGED_BY] == "spec"


def test_waiting_for_the_wave_is_progress_not_failure(make_md, gpu_spec) -> None:
    deployment = _running(make_md, gpu_spec, OLD)
    observed = Observed(
        generation=1,
        desired_replicas=2,
        url="http://resnet.team-a.svc.cluster.local",
        selector="app=resnet",
        model_name="resnet",
        children_current=True,
        deployment=deployment,
        pods=[],
        waiting_for_upgrade_wave=True,
    )
    status = compute_status(observed, {}, datetime(2026, 12, 1, tzinfo=UTC))
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Progressing"] == ("True", "WaitingForUpgradeWave")
    assert conditions["Ready"] == ("True", "Ready")
    assert conditions["Degraded"] == ("False", "AsExpected") and conditions["Stalled"] == ("False", "AsExpected")
