"""The reconciler's rollback path against a recording fake of KubeApi: what it reads and writes, and when not."""

import copy
import json
from typing import Any

import kopf
import pytest
from modeldeploy_operator.manifests import ModelDeployment, build_deployment
from modeldeploy_operator.manifests.deployment import BuildOptions, template_hash
from modeldeploy_operator.reconcile.reconciler import Children, Reconciler

IMAGE = "runtime:1"
ANNOTATION = "serving.modeldeploy.dev/template-hash"


class RecordingApi:
    """KubeApi's surface, answering as the apiserver would and keeping every call."""

    def __init__(self, replicaset_templates: dict[str, dict[str, Any]], owner_alive: bool = True) -> None:
        self.replicaset_templates = replicaset_templates
        self.owner_alive = owner_alive
        self.calls: list[tuple[str, Any]] = []
        self.version = 100

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", manifest))
        self.version += 1
        return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": str(self.version)}}

    async def replicaset_template(self, namespace: str, selector: Any, version: str) -> dict[str, Any] | None:
        self.calls.append(("replicaset_template", version))
        return copy.deepcopy(self.replicaset_templates.get(version))

    async def is_current(self, body: dict[str, Any]) -> bool:
        self.calls.append(("is_current", body["metadata"]["uid"]))
        return self.owner_alive

    async def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> str:
        self.calls.append(("write_status", status))
        self.version += 1
        return str(self.version)

    async def post_event(self, owner: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.calls.append(("post_event", reason))

    def made(self, kind: str) -> list[Any]:
        return [argument for call, argument in self.calls if call == kind]

    def applied(self, kind: str) -> list[dict[str, Any]]:
        return [manifest for manifest in self.made("apply") if manifest["kind"] == kind]


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
    api = RecordingApi({good: good_template})
    reconciler = Reconciler(api, IMAGE, metrics_scraper_namespace="monitoring")  # type: ignore[arg-type]

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
    assert "RolledBack" in api.made("post_event")

    # The next event: the watch shows the held Deployment and the written status; nothing to read, nothing to write.
    api.calls.clear()
    shown = {**held, "metadata": {**held["metadata"], "generation": 4, "resourceVersion": "200"}}
    shown["status"] = {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}
    shown["status"]["availableReplicas"] = 2
    await reconciler.reconcile({**body, "status": status}, Children(deployment=shown), "child")
    assert api.made("replicaset_template") == [] and api.applied("Deployment") == []


async def test_a_child_missing_for_an_owner_that_is_gone_is_not_re_created_nor_the_status_written() -> None:
    body = _body(1, "file:///models/good.pt", [])
    api = RecordingApi({}, owner_alive=False)
    reconciler = Reconciler(api, IMAGE, metrics_scraper_namespace="monitoring")  # type: ignore[arg-type]

    await reconciler.reconcile(body, Children(), "child")

    assert api.calls == [("is_current", "uid-1")]


async def test_the_owner_is_read_live_once_per_reconcile_and_not_at_all_from_its_own_handler() -> None:
    body = _body(1, "file:///models/good.pt", [])
    api = RecordingApi({})
    reconciler = Reconciler(api, IMAGE, metrics_scraper_namespace="monitoring")  # type: ignore[arg-type]

    await reconciler.reconcile(body, Children(), "resync")
    assert api.made("is_current") == ["uid-1"]
    assert [m["kind"] for m in api.made("apply")] == ["Deployment", "Service", "NetworkPolicy"]

    api.calls.clear()
    await reconciler.reconcile(_body(1, "file:///models/good.pt", []), Children(), "spec", owner_confirmed=True)
    assert api.made("is_current") == []


async def test_an_older_generation_than_one_reconciled_is_not_applied_but_retried() -> None:
    api = RecordingApi({})
    reconciler = Reconciler(api, IMAGE, metrics_scraper_namespace="monitoring")  # type: ignore[arg-type]
    await reconciler.reconcile(_body(2, "file:///models/new.pt", []), Children(), "spec", owner_confirmed=True)
    api.calls.clear()

    with pytest.raises(kopf.TemporaryError):
        await reconciler.reconcile(_body(1, "file:///models/old.pt", []), Children(), "child")
    assert api.calls == []
