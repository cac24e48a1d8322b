"""A rolling update under steady load through the Service drops no request: the runtime serves on through its
shutdown delay while kube-proxy takes the old pod out of the Service, and new pods get traffic only once Ready."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from modeldeploy_devcluster.connection import ClusterConnection
from real_pods import is_ready, status_of, steady_load, wait_for_status


@pytest.mark.timeout(900)
def test_a_spec_change_rolls_out_under_load_without_a_failed_request(
    cluster: ClusterConnection, in_cluster_operator: str, deploy: Callable[..., str], example_model: Path
) -> None:
    namespace, name = in_cluster_operator, "rolling"
    deploy(name, replicas=2)
    with steady_load(cluster, namespace, name) as load:
        generation_before = status_of(cluster, namespace, name)["observedGeneration"]
        runtime = {
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
            "maxBatchDelayMs": 3,
        }
        deploy(name, replicas=2, runtime=runtime)

        def rolled_out(status: dict[str, object]) -> bool:
            return (
                is_ready(status)
                and int(str(status.get("observedGeneration"))) > generation_before
                and status.get("updatedReplicas") == 2
                and status.get("replicas") == 2
            )

        wait_for_status(cluster, namespace, name, rolled_out, "rolled out to the new spec", timeout=600)
        # The old pods' shutdown delay: they may still answer the connections they were given.
        time.sleep(8)
    print(f"rolling update under load: sent {load.sent}, answered {load.answered}, failed {len(load.failures)}")
    assert load.sent > 50 and not load.ran_out, "the load ran through the whole rollout"
    assert load.failures == []
    assert load.answered == load.sent
