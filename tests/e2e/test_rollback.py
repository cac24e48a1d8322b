"""Automatic rollback with real pods: a new model that fails to load, after a good one, is rolled back by the
operator while the old replicas keep answering through the Service; the spec stays as the user wrote it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from modeldeploy_devcluster.connection import ClusterConnection
from real_pods import MODEL_CLAIM, condition, status_of, steady_load, wait_for_status


@pytest.mark.timeout(900)
def test_a_model_that_fails_to_load_is_rolled_back_while_the_service_keeps_answering(
    cluster: ClusterConnection, in_cluster_operator: str, deploy: Callable[..., str], example_model: Path
) -> None:
    namespace, name = in_cluster_operator, "rollback"
    broken = example_model.parent / "not-a-model.pt"
    broken.write_bytes(b"not a TorchScript archive\n" * 64)
    broken.chmod(0o644)
    deploy(name, replicas=2)
    with steady_load(cluster, namespace, name) as load:
        deploy(name, replicas=2, model={"uri": f"pvc://{MODEL_CLAIM}/not-a-model.pt"})
        failed_at = time.monotonic()

        def rolled_back(status: dict[str, object]) -> bool:
            return condition(status, "RolledBack").get("status") == "True"

        status = wait_for_status(cluster, namespace, name, rolled_back, "RolledBack", timeout=600)
        seconds_to_rollback = time.monotonic() - failed_at
    print(
        f"rollback with real pods: RolledBack {seconds_to_rollback:.1f} s after the bad spec; "
        f"sent {load.sent}, answered {load.answered}, failed {len(load.failures)}"
    )
    assert condition(status, "RolledBack")["reason"] == "ModelLoadFailed", condition(status, "RolledBack")
    assert condition(status, "Ready")["status"] == "False", "an older version than the spec asks for is not Ready"
    assert load.failures == [] and load.answered == load.sent > 20 and not load.ran_out
    md = json.loads(cluster.kubectl("get", "md", name, "-n", namespace, "-o", "json").stdout)
    assert md["spec"]["model"]["uri"].endswith("/not-a-model.pt"), "the spec stays as the user wrote it"
    deployment = json.loads(cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout)
    assert deployment["status"].get("availableReplicas") == 2
    assert not any(
        "not-a-model" in json.dumps(container.get("env", []))
        for container in deployment["spec"]["template"]["spec"]["containers"]
    ), "the Deployment runs the last good model again"
    assert status_of(cluster, namespace, name)["revisions"][-1]["outcome"] == "Failed"
