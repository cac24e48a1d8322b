"""The test webhook's pure parts: what it changes in a Deployment, what it answers, how it is registered."""

import base64
import json

from modeldeploy_devcluster.admission_webhook import (
    INJECTED_ENV,
    mutation_patch,
    pinned,
    review_response,
    webhook_configuration,
)

DIGEST = "sha256:" + "0" * 64


def _deployment(**runtime: object) -> dict:
    containers = [
        {"name": "sidecar", "image": "proxy:1"},
        {"name": "runtime", "image": "registry:5000/rt:1", **runtime},
    ]
    return {"spec": {"template": {"spec": {"containers": containers}}}}


def test_pinned_keeps_the_repository_and_registry_port_and_is_stable() -> None:
    assert pinned("registry:5000/rt:1").startswith("registry:5000/rt@sha256:")
    assert pinned("registry:5000/rt:1") == pinned("registry:5000/rt:1") != pinned("registry:5000/rt:2")
    assert pinned("registry:5000/rt").startswith("registry:5000/rt@sha256:")
    assert pinned(f"rt@{DIGEST}") == f"rt@{DIGEST}"


def test_the_patch_mutates_only_the_named_container() -> None:
    path = "/spec/template/spec/containers/1"
    assert mutation_patch(_deployment(env=[{"name": "A", "value": "1"}]), "runtime") == [
        {"op": "replace", "path": f"{path}/image", "value": pinned("registry:5000/rt:1")},
        {"op": "add", "path": f"{path}/imagePullPolicy", "value": "Always"},
        {"op": "add", "path": f"{path}/env/-", "value": INJECTED_ENV},
    ]
    assert mutation_patch(_deployment(imagePullPolicy="Always"), "runtime")[1:] == [
        {"op": "add", "path": f"{path}/env", "value": [INJECTED_ENV]}
    ]


def test_a_deployment_mutated_already_gets_an_empty_patch() -> None:
    mutated = _deployment(image=pinned("registry:5000/rt:1"), imagePullPolicy="Always", env=[INJECTED_ENV])
    assert mutation_patch(mutated, "runtime") == []


def test_the_review_answers_with_a_base64_json_patch_only_when_there_is_one() -> None:
    review = {"request": {"uid": "u-1", "object": _deployment()}}
    response = review_response(review, "runtime")["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == ("u-1", True, "JSONPatch")
    assert json.loads(base64.b64decode(response["patch"])) == mutation_patch(_deployment(), "runtime")
    assert review_response({"request": {"uid": "u-2", "object": {}}}, "runtime")["response"] == {
        "uid": "u-2",
        "allowed": True,
    }


def test_the_configuration_calls_loopback_over_tls_for_one_namespace_and_fails_closed() -> None:
    configuration = webhook_configuration("pin", 8443, b"PEM", "team-a", {"app": "x"})
    (webhook,) = configuration["webhooks"]
    assert webhook["clientConfig"] == {
        "url": "https://127.0.0.1:8443/mutate",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert webhook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}
    assert webhook["objectSelector"] == {"matchLabels": {"app": "x"}}
    assert webhook["failurePolicy"] == "Fail" and webhook["sideEffects"] == "None"
    assert webhook["rules"][0]["resources"] == ["deployments"]
