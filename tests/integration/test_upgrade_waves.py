"""An operator upgrade that changes every pod template rolls the fleet in waves, on a real control plane: the
operator is restarted with another default runtime image (a second builder version) and a wave of one, and a
watch of the Deployments records that no two rolled at once. A spec edited meanwhile is not held back.

Simulated pods are Ready at once, so a whole upgrade would pass in a second: the Deployments are paused (a field
the operator does not own) while it starts, so that the first wave holds the others waiting until the test
resumes them."""

from collections.abc import Mapping
from typing import Any

from watching import watching

NEW_IMAGE = "modeldeploy/runtime:next"
MODELS = [f"model-{index}" for index in range(5)]


def _image(deployment: Mapping[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def _rolling(deployment: Mapping[str, Any]) -> bool:
    """On the new image and not yet what `kubectl rollout status` waits for: the controller saw the spec, and
    every replica is updated and available, with none of the old ones left. (Resuming a paused Deployment also
    changes its generation for a moment; that is not a rollout.)"""
    status, desired = deployment.get("status") or {}, deployment["spec"]["replicas"]
    return _image(deployment) == NEW_IMAGE and not (
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and status.get("updatedReplicas") == desired
        and status.get("availableReplicas") == desired
        and status.get("replicas") == desired
    )


def _most_rolling_at_once(versions: list[dict[str, Any]], leaving_out: str) -> int:
    latest: dict[str, dict[str, Any]] = {}
    most = 0
    for deployment in versions:
        latest[deployment["metadata"]["name"]] = deployment
        most = max(most, sum(_rolling(d) for name, d in latest.items() if name != leaving_out))
    return most


def _progress(md: Mapping[str, Any] | None) -> tuple[str, str]:
    conditions = ((md or {}).get("status") or {}).get("conditions") or []
    condition = next((c for c in conditions if c["type"] == "Progressing"), {})
    return condition.get("status", ""), condition.get("reason", "")


def _degraded(md: Mapping[str, Any]) -> bool:
    return any(c["type"] == "Degraded" and c["status"] == "True" for c in md["status"].get("conditions") or [])


def _first(versions: list[dict[str, Any]], name: str, predicate: Any) -> int:
    return next(i for i, d in enumerate(versions) if d["metadata"]["name"] == name and predicate(d))


def _batch_size(deployment: Mapping[str, Any]) -> str | None:
    env = deployment["spec"]["template"]["spec"]["containers"][0].get("env") or []
    return next((var.get("value") for var in env if var["name"] == "MODELDEPLOY_MAX_BATCH_SIZE"), None)


def test_an_operator_upgrade_rolls_one_model_at_a_time(start_operator, kube, md) -> None:
    first = start_operator()
    for name in MODELS:
        kube.apply(md(name))
    for name in MODELS:
        kube.wait_condition(name, "Ready", "True")
    first.stop()
    for name in MODELS:
        kube.cluster.kubectl("rollout", "pause", f"deployment/{name}", "-n", kube.namespace)

    with watching(kube, "deployments") as deployments, watching(kube, "md") as statuses:
        upgraded = start_operator(runtime_image=NEW_IMAGE, MODELDEPLOY_UPGRADE_WAVE_SIZE="1")
        edited = kube.wait_for(
            "a model waiting for its wave",
            lambda: next(
                (n for n in MODELS if _progress(kube.get("md", n)) == ("True", "WaitingForUpgradeWave")), None
            ),
        )
        kube.apply(md(edited, runtime={"maxBatchSize": 8}))  # its user edits the spec meanwhile
        kube.wait_for("the edit applied at once", lambda: _batch_size(kube.get("deployment", edited)) == "8")
        for name in MODELS:
            kube.cluster.kubectl("rollout", "resume", f"deployment/{name}", "-n", kube.namespace)
        kube.wait_for(
            "every model on the new image, rolled out",
            lambda: (
                all(_image(kube.get("deployment", n)) == NEW_IMAGE for n in MODELS)
                and all(_progress(kube.get("md", n)) == ("False", "RolloutComplete") for n in MODELS)
            ),
            timeout=180,
        )

    for state in ("rolling", "waiting"):
        assert upgraded.metric("modeldeploy_upgrade_wave_modeldeployments", state=state) == 0
    versions = deployments.objects
    assert _most_rolling_at_once(versions, leaving_out=edited) == 1
    waited = {obj["metadata"]["name"] for obj in statuses.objects if _progress(obj)[1] == "WaitingForUpgradeWave"}
    assert len(waited) == len(MODELS) - 1, f"all but the first waited for their wave: {waited}"
    assert not any(_degraded(obj) for obj in statuses.objects if obj.get("status")), "waiting is not failing"
    # The edited model rolled its spec at once, not in its turn: before the last of the others got the new image.
    edit_rolled = _first(versions, edited, lambda d: _batch_size(d) == "8")
    last_upgraded = max(_first(versions, n, lambda d: _image(d) == NEW_IMAGE) for n in MODELS if n != edited)
    assert edit_rolled < last_upgraded
