"""The reconciler's decisions against an in-memory fake of its I/O boundary: what it reads and writes, when it
writes nothing, and which errors stop it for good."""

import copy
import json
from typing import Any

import kopf
import pytest
from apiserver_fields import as_applied
from fake_cluster import FakeCluster
from modeldeploy_operator.api import ModelDeployment
from modeldeploy_operator.kube import RejectedError, TransientError
from modeldeploy_operator.manifests import build_deployment
from modeldeploy_operator.manifests.deployment import BuildOptions, template_hash
from modeldeploy_operator.reconcile.reconciler import (
    CONFLICT_RECHECK_SECONDS,
    RETRY_DELAY_SECONDS,
    Children,
    Reconciler,
)

IMAGE = "runtime:1"
ANNOTATION = "serving.modeldeploy.dev/template-hash"


def _body(generation: int, uri: str, revisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "resnet", "namespace": "team-a", "uid": "uid-1", "generation": generation},
        "spec": {"model": {"uri": uri}, "replicas": 2},
        "status": {"revisions": revisions},
    }


def _live(body: dict[str, Any], **status: Any) -> dict[str, Any]:
    """The Deployment as the watch shows it after the controller acted on it."""
    deployment = build_deployment(ModelDeployment.from_body(body), BuildOptions(IMAGE))
    deployment["metadata"].update(generation=3, resourceVersion="50")
    deployment["status"] = {"observedGeneration": 3, **status}
    return deployment


def _crashing_pod(version: str) -> dict[str, Any]:
    crash = {
        "name": "runtime",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 3, "message": "ModelLoadFailed: bad file"}},
    }
    return {"metadata": {"name": "p", "annotations": {ANNOTATION: version}}, "status": {"containerStatuses": [crash]}}


async def test_a_failing_update_is_rolled_back_once_and_then_held_without_reads_or_writes() -> None:
    good_body = _body(1, "file:///models/good.pt", [])
    good = template_hash(_live(good_body))
    assert good is not None
    good_template = copy.deepcopy(_live(good_body)["spec"]["template"])
    good_template["metadata"]["labels"]["pod-template-hash"] = "5d8f7b"
    succeeded = {"generation": 1, "templateHash": good, "modelUri": "file:///models/good.pt", "outcome": "Succeeded"}
    body = _body(2, "file:///models/broken.pt", [{**succeeded, "time": "2026-11-23T11:00:00Z"}])
    broken = _live(body, replicas=3, updatedReplicas=1, readyReplicas=2, availableReplicas=2)
    api = FakeCluster({good: good_template})
    reconciler = _reconciler(api)

    await reconciler.reconcile(
        body, Children(deployment=broken, pods=[_crashing_pod(str(template_hash(broken)))]), "child"
    )

    assert api.made("replicaset_template") == [good]
    (held,) = api.applied("Deployment")
    assert template_hash(held) == good and "pod-template-hash" not in held["spec"]["template"]["metadata"]["labels"]
    assert held["spec"]["replicas"] == 2
    rolled_back = json.loads(held["metadata"]["annotations"]["serving.modeldeploy.dev/rolled-back"])
    assert (rolled_back["failed_generation"], rolled_back["to_generation"], rolled_back["reason"]) == (
        2,
        1,
        "ModelLoadFailed",
    )
    (status,) = api.made("write_status")
    assert {c["type"]: c["status"] for c in status["conditions"]}["RolledBack"] == "True"
    assert "RolledBack" in api.events()

    # The next event: the watch shows the held Deployment and the written status; nothing to read, nothing to write.
    api.calls.clear()
    shown = as_applied(held)
    shown["metadata"].update(generation=4, resourceVersion="200")
    shown["status"] = {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}
    shown["status"]["availableReplicas"] = 2
    await reconciler.reconcile({**body, "status": status}, Children(deployment=shown), "child")
    assert api.made("replicaset_template") == [] and api.applied("Deployment") == []


def _new_body(**spec: Any) -> dict[str, Any]:
    metadata = {"name": "resnet", "namespace": "team-a", "uid": "uid-1", "generation": 1}
    return {"metadata": metadata, "spec": {"model": {"uri": "file:///models/resnet.pt"}, "replicas": 2, **spec}}


def _reconciler(api: FakeCluster) -> Reconciler:
    return Reconciler(api, IMAGE, metrics_scraper_namespace="monitoring", upgrade_wave_size=1)


def _stored(status: dict[str, Any]) -> dict[str, Any]:
    """The status as the watch shows it: the apiserver stores a merge patch's nulls as absent keys."""
    return {key: value for key, value in status.items() if value is not None}


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


async def _created(api: FakeCluster, body: dict[str, Any]) -> dict[str, Any]:
    """Reconciles a new ModelDeployment; returns it as the watch then shows it, with the status written."""
    await _reconciler(api).reconcile(body, Children(), "spec")
    (status,) = api.made("write_status")
    api.calls.clear()
    return {**body, "status": _stored(status)}


async def test_a_new_model_deployment_gets_its_children_and_then_nothing_is_written_while_nothing_changes() -> None:
    api = FakeCluster()
    body = _new_body()

    await _reconciler(api).reconcile(body, Children(), "spec")

    # Each only created, never applied over (nothing of another's is adopted), the Deployment last; nothing read.
    assert [manifest["kind"] for manifest in api.made("create")] == ["Service", "NetworkPolicy", "Deployment"]
    assert api.made("apply") == [] and api.made("read_child") == []
    (status,) = api.made("write_status")
    assert _conditions(status)["Ready"][0] == "False" and "DriftCorrected" not in api.events()

    # A restarted operator (nothing remembered) sees the same children and status: no request at all.
    api.calls.clear()
    for trigger in ("resume", "child", "resync"):
        await _reconciler(api).reconcile({**body, "status": _stored(status)}, api.children(), trigger)
    assert api.calls == []


async def test_replicas_are_handed_to_the_hpa_before_an_apply_that_leaves_them_out() -> None:
    api = FakeCluster()
    body = await _created(api, _new_body())
    scaled = api.children().deployment
    assert scaled is not None
    scaled["spec"]["replicas"] = 5  # the HPA scaled it

    await _reconciler(api).reconcile(body, api.children(deployment=scaled, deployment_autoscaled=True), "autoscaler")

    assert [call for call, _ in api.calls if call in ("hand_over_replicas", "apply")] == [
        "hand_over_replicas",
        "apply",
    ]
    assert api.made("hand_over_replicas") == [5]
    (applied,) = api.applied("Deployment")
    assert "replicas" not in applied["spec"]
    (status,) = api.made("write_status")
    assert status["readySummary"] == "0/5"  # the HPA's count is the desired one


async def test_an_apply_the_apiserver_rejects_stops_for_good_with_the_reason_in_the_status() -> None:
    api = FakeCluster()
    api.failures["Service"] = RejectedError('Service "resnet" is invalid: spec.ports[0].port: bad')

    with pytest.raises(kopf.PermanentError, match="rejected the Service"):
        await _reconciler(api).reconcile(_new_body(), Children(), "spec")

    (status,) = api.made("write_status")
    assert _conditions(status)["Ready"] == ("False", "ApplyFailed")
    assert _conditions(status)["Stalled"] == ("True", "ApplyFailed")
    assert "spec.ports[0].port: bad" in status["lastFailure"]["message"]
    assert api.written_kinds() == ["Service"]  # nothing after the child that failed: no pods


async def test_an_unreachable_apiserver_is_retried_after_a_delay_without_a_status() -> None:
    api = FakeCluster()
    api.failures["Service"] = TransientError("HTTP 503: the server is currently unable to handle the request")

    with pytest.raises(kopf.TemporaryError, match="applying Service: HTTP 503") as retried:
        await _reconciler(api).reconcile(_new_body(), Children(), "spec")

    assert retried.value.delay == RETRY_DELAY_SECONDS
    assert api.made("write_status") == []


async def test_a_failed_read_of_a_taken_name_is_retried_and_writes_nothing_over_it() -> None:
    api = FakeCluster()
    api.objects[("Service", "resnet")] = _foreign_service()
    api.read_failure = TransientError("HTTP 503: etcd leader changed")

    with pytest.raises(kopf.TemporaryError, match="applying Service: HTTP 503") as retried:
        await _reconciler(api).reconcile(_new_body(), Children(), "spec")

    assert retried.value.delay == RETRY_DELAY_SECONDS
    assert api.made("already_exists") == ["Service"] and api.made("read_child") == ["Service"]
    assert api.written_kinds() == [] and api.made("write_status") == []
    assert api.objects[("Service", "resnet")] == _foreign_service()


async def test_a_spec_the_parse_refuses_stops_for_good_with_the_field_in_the_status() -> None:
    api = FakeCluster()
    body = _new_body(model={"uri": "https://models.example.com/dir/"})

    with pytest.raises(kopf.PermanentError, match=r"spec\.model\.uri"):
        await _reconciler(api).reconcile(body, Children(), "spec")

    (status,) = api.made("write_status")
    assert _conditions(status)["Ready"] == ("False", "InvalidSpec")
    assert api.made("apply") == [] and api.made("read_child") == []


def _foreign_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "resnet", "namespace": "team-a", "resourceVersion": "7", "labels": {"app": "legacy"}},
        "spec": {"selector": {"app": "legacy"}, "ports": [{"port": 9000}]},
    }


async def test_an_object_of_someone_else_with_the_name_is_never_taken_over() -> None:
    api = FakeCluster()
    api.objects[("Service", "resnet")] = _foreign_service()

    with pytest.raises(kopf.TemporaryError) as retried:
        await _reconciler(api).reconcile(_new_body(), Children(), "spec")

    assert retried.value.delay == CONFLICT_RECHECK_SECONDS
    # Refused as a create, read once, and left as it was; the Deployment comes after it: no pods either.
    assert api.made("already_exists") == ["Service"] and api.made("read_child") == ["Service"]
    assert api.written_kinds() == [] and api.objects[("Service", "resnet")] == _foreign_service()
    (status,) = api.made("write_status")
    conditions = _conditions(status)
    assert conditions["Ready"] == ("False", "ChildConflict")
    assert conditions["Degraded"] == ("True", "ChildConflict") and conditions["Stalled"] == ("True", "ChildConflict")
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready["message"].startswith(
        "Service team-a/resnet exists and was not created for this ModelDeployment (no controller owner reference)"
    )
    assert "delete or rename that Service" in ready["message"]
    assert [(kind, reason) for kind, reason, _ in api.made("post_event")] == [("Warning", "ChildConflict")]

    # Checked again (the retry): the same status is not written twice. Then a person deletes the Service.
    api.calls.clear()
    body = {**_new_body(), "status": _stored(status)}
    with pytest.raises(kopf.TemporaryError):
        await _reconciler(api).reconcile(body, Children(), "spec")
    assert api.made("write_status") == [] and api.made("apply") == []
    del api.objects[("Service", "resnet")]
    await _reconciler(api).reconcile(body, Children(), "spec")
    assert len(api.applied("Service")) == 1 and "Recovered" in api.events()


async def test_a_deployment_of_someone_else_with_the_name_gets_no_pods_of_ours_beside_it() -> None:
    api = FakeCluster()
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "resnet", "namespace": "team-a", "resourceVersion": "7"},
        "spec": {"replicas": 3},
    }
    api.objects[("Deployment", "resnet")] = copy.deepcopy(foreign)

    with pytest.raises(
        kopf.TemporaryError, match="Deployment team-a/resnet exists and was not created for this ModelDeployment"
    ):
        await _reconciler(api).reconcile(_new_body(), Children(), "spec")

    # The Service and NetworkPolicy come first and are ours; the Deployment is left exactly as it was.
    assert api.written_kinds() == ["Service", "NetworkPolicy"] and api.made("already_exists") == ["Deployment"]
    assert api.objects[("Deployment", "resnet")] == foreign
    (status,) = api.made("write_status")
    assert _conditions(status)["Ready"] == ("False", "ChildConflict")


async def test_our_own_child_the_watch_has_not_shown_yet_is_applied_and_a_dead_owners_is_not() -> None:
    api = FakeCluster()
    body = await _created(api, _new_body())
    ours = api.children()

    # The index lags (ours.service left out): the read finds our owner reference, so the apply goes ahead.
    await _reconciler(api).reconcile(body, api.children(service=None), "resync")
    assert api.made("read_child") == ["Service"] and len(api.applied("Service")) == 1

    # The child of an earlier ModelDeployment of the same name, not yet collected, is not ours either.
    api.calls.clear()
    earlier = copy.deepcopy(ours.network_policy)
    assert earlier is not None
    earlier["metadata"]["ownerReferences"][0]["uid"] = "uid-0"
    with pytest.raises(kopf.TemporaryError, match="an earlier ModelDeployment of this name"):
        await _reconciler(api).reconcile(body, api.children(network_policy=earlier), "child")
    assert api.made("apply") == []


async def test_a_deleted_child_is_recreated_with_a_drift_corrected_event() -> None:
    api = FakeCluster()
    body = await _created(api, _new_body())
    del api.objects[("Service", "resnet")]  # someone deleted it: the watch shows it gone

    await _reconciler(api).reconcile(body, api.children(), "child")

    assert api.made("read_child") == []
    assert [manifest["kind"] for manifest in api.made("create")] == ["Service"] and api.made("apply") == []
    (event,) = api.made("post_event")
    assert event == ("Normal", "DriftCorrected", "restored Service resnet (missing)")


async def test_a_child_missing_for_an_owner_that_is_gone_is_not_re_created_nor_the_status_written() -> None:
    api = FakeCluster(owner_alive=False)

    await _reconciler(api).reconcile(_body(1, "file:///models/good.pt", []), Children(), "child")

    assert api.calls == [("is_current", "uid-1")]


async def test_the_owner_is_read_live_once_per_reconcile_and_not_at_all_from_its_own_handler() -> None:
    api = FakeCluster()
    reconciler = _reconciler(api)

    await reconciler.reconcile(_body(1, "file:///models/good.pt", []), Children(), "resync")
    assert api.made("is_current") == ["uid-1"]
    assert api.written_kinds() == ["Service", "NetworkPolicy", "Deployment"]

    api.calls.clear()
    await reconciler.reconcile(_body(1, "file:///models/good.pt", []), Children(), "spec", owner_confirmed=True)
    assert api.made("is_current") == []


async def test_an_older_generation_than_one_reconciled_is_not_applied_but_retried() -> None:
    api = FakeCluster()
    reconciler = _reconciler(api)
    await reconciler.reconcile(_body(2, "file:///models/new.pt", []), Children(), "spec", owner_confirmed=True)
    api.calls.clear()

    with pytest.raises(kopf.TemporaryError):
        await reconciler.reconcile(_body(1, "file:///models/old.pt", []), Children(), "child")
    assert api.calls == []
