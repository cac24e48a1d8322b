"""The operator's caches on the real control plane: only what it owns is streamed to it, a re-list after 410 Gone
converges to the apiserver (no ghosts), and a bulk delete of ModelDeployments re-creates no child."""

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_devcluster import LocalCluster
from modeldeploy_devcluster.local_operator import LocalOperator, start_local_operator

OWNED = "app.kubernetes.io/managed-by=modeldeploy-operator"
CRASH_LOOP = {
    "devcluster.modeldeploy.dev/simulate": "crash-loop",
    "devcluster.modeldeploy.dev/exit-code": "3",
    "devcluster.modeldeploy.dev/message": "ModelLoadFailed: bad archive",
}


def _names(cluster: Any, kind: str, namespace: str, selector: str | None = None) -> list[str]:
    args = ["get", kind, "-n", namespace, "-o", "json", *(["-l", selector] if selector else [])]
    items = json.loads(cluster.kubectl(*args).stdout)["items"]
    return sorted(item["metadata"]["name"] for item in items)


def _running_pods(cluster: Any, namespace: str) -> int:
    items = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    return sum(
        1 for pod in items if pod["status"].get("phase") == "Running" and "deletionTimestamp" not in pod["metadata"]
    )


@pytest.fixture
def unrelated_namespace(cluster: Any, namespace: str) -> Iterator[str]:
    other = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        yield other
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


@pytest.fixture
def cluster_scoped_operator(cluster: Any, crd_installed: None, tmp_path: Path) -> Iterator[LocalOperator]:
    handle = start_local_operator(
        cluster.kubeconfig, tmp_path / "operator.log", [], extra_args=["--runtime-image", "modeldeploy/runtime:test"]
    )
    yield handle
    handle.stop()


def test_unrelated_pods_in_another_namespace_are_not_streamed_to_the_operator(
    cluster, kube, md, unrelated_namespace, cluster_scoped_operator
) -> None:
    operator, other = cluster_scoped_operator, unrelated_namespace
    cluster.kubectl("create", "deployment", "unrelated", "--image=registry.invalid/unrelated:1", "--replicas=30",
                    "-n", other)  # fmt: skip
    kube.wait_for("30 unrelated pods Running", lambda: _running_pods(cluster, other) == 30)
    kube.apply(md("resnet"))
    kube.wait_condition("resnet", "Ready", "True")
    kube.wait_for("the operator's pod cache", lambda: operator.metric("modeldeploy_watched_objects", kind="Pod") == 1)
    streamed = operator.metric("modeldeploy_watch_events_total", kind="Pod")

    # Churn of unrelated pods: 20 more, then all of them replaced.
    cluster.kubectl("scale", "deployment/unrelated", "--replicas=50", "-n", other)
    kube.wait_for("50 unrelated pods Running", lambda: _running_pods(cluster, other) == 50)
    cluster.kubectl("delete", "pods", "--all", "-n", other, "--wait=false")
    kube.wait_for("50 new unrelated pods Running", lambda: _running_pods(cluster, other) == 50, timeout=120)

    assert operator.metric("modeldeploy_watch_events_total", kind="Pod") == streamed
    assert operator.metric("modeldeploy_watched_objects", kind="Pod") == 1
    assert kube.condition("resnet", "Ready")["status"] == "True"


def test_after_a_forced_410_gone_the_caches_and_children_match_the_apiserver(
    cluster, kube, md, namespace, start_operator
) -> None:
    operator = start_operator(MODELDEPLOY_RESYNC_PERIOD_SECONDS="5")
    kube.apply(md("keep", podMetadata={"annotations": CRASH_LOOP}))
    kube.apply(md("doomed"))
    kube.wait_condition("keep", "Degraded", "True", "ModelLoadFailed")
    kube.wait_condition("doomed", "Ready", "True")
    (crashing,) = _names(cluster, "pods", namespace, "app.kubernetes.io/instance=keep")

    # While the operator is away: a ModelDeployment deleted (its children collected), a crash-looping pod deleted
    # (its ReplicaSet replaces it), and the apiserver restarted so that the watches' resourceVersions are gone.
    operator.send(signal.SIGSTOP)
    try:
        kube.run("delete", "md", "doomed")
        kube.wait_for(
            "doomed's children collected",
            lambda: _names(cluster, "all", namespace, "app.kubernetes.io/instance=doomed") == [],
        )
        kube.run("delete", "pod", crashing)
        kube.wait_for(
            "keep's new pod",
            lambda: (
                len(_names(cluster, "pods", namespace, "app.kubernetes.io/instance=keep")) == 1
                and crashing not in _names(cluster, "pods", namespace)
            ),
        )
        LocalCluster(cluster.kubeconfig.parent).restart_apiserver()
    finally:
        operator.send(signal.SIGCONT)

    kube.wait_for(
        "the pod cache re-listed after 410 Gone",
        lambda: operator.metric("modeldeploy_watch_relists_total", kind="Pod") >= 1,
    )
    pods = _names(cluster, "pods", namespace)
    kube.wait_for("the caches equal to the apiserver", lambda: (
        operator.metric("modeldeploy_watched_objects", kind="Pod"),
        operator.metric("modeldeploy_watched_objects", kind="ModelDeployment"),
        operator.metric("modeldeploy_watched_objects", kind="Deployment"),
    ) == (len(pods), 1, 1))  # fmt: skip
    time.sleep(12)  # two resyncs: neither re-creates the deleted ModelDeployment's children
    assert _names(cluster, "deployments,services,networkpolicies", namespace, OWNED) == ["keep"] * 3
    assert kube.condition("keep", "Degraded")["status"] == "True"
    assert operator.metric("modeldeploy_child_applies_total", reason="missing") == 6


def test_a_bulk_delete_of_model_deployments_re_creates_no_child(cluster, kube, md, namespace, start_operator) -> None:
    operator = start_operator(MODELDEPLOY_RESYNC_PERIOD_SECONDS="5")
    count = 24
    for index in range(count):
        kube.apply(md(f"m{index}", gpu={"count": 0}))
    kube.wait_for(
        f"{count} ModelDeployments' children",
        lambda: operator.metric("modeldeploy_child_applies_total", reason="missing") == 3 * count,
    )

    kube.run("delete", "md", "--all", "--wait=false")
    kube.wait_for(
        "every child collected",
        lambda: _names(cluster, "deployments,services,networkpolicies,pods", namespace, OWNED) == [],
        timeout=120,
    )
    time.sleep(12)  # two resyncs, and every child's DELETED event handled

    assert _names(cluster, "deployments,services,networkpolicies,pods", namespace, OWNED) == []
    assert operator.metric("modeldeploy_child_applies_total", reason="missing") == 3 * count
