"""GitOps: stock health logic reads real ModelDeployments right, and applying the same manifests twice is a no-op.

The health verdicts come from the tools' own code (the `health` fixture, tests/conftest.py). Argo CD's own binary
is not built here (its module graph is far too large for this machine): its health script is.
The failing states are simulated on KWOK nodes (pod annotations), because each health reading needs its state held
steady on demand; real containers fail for real in tests/e2e/test_model_delivery_and_failures.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from chart_models import MODELS, apply, example, wait_condition
from chart_operator import OperatorStarter, chart_env
from chart_release import Release, render
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.kwok import EXIT_CODE_ANNOTATION, MESSAGE_ANNOTATION, SIMULATE_ANNOTATION, Simulation
from modeldeploy_devcluster.testing import wait_until

GITOPS_MANAGER = "gitops"


def test_kstatus_and_argocd_read_ready_progressing_and_degraded_modeldeployments(
    cluster: ClusterConnection,
    release: Release,
    run_operator: OperatorStarter,
    health: Any,  # tests/conftest.py HealthCheck
) -> None:
    release.install({"watch": {"scope": "release"}, "replicaCount": 1, "leaderElection": {"enabled": False}})
    namespace = release.namespace
    deployment = release.get("deployment", release.fullname)
    assert deployment is not None
    token = cluster.service_account_kubeconfig(namespace, release.fullname)
    operator = run_operator(token, chart_env(deployment, namespace), [namespace])

    never_ready = {"annotations": {SIMULATE_ANNOTATION: Simulation.NOT_READY.value}}
    cannot_load = {
        SIMULATE_ANNOTATION: Simulation.CRASH_LOOP.value,
        EXIT_CODE_ANNOTATION: "3",
        MESSAGE_ANNOTATION: "ModelLoadFailed: not a TorchScript archive",
    }
    for name, manifest in {
        "ready": example("cpu-classifier"),
        "progressing": example("cpu-classifier", podMetadata=never_ready),
        "degraded": example("iris-classifier", gpu={"count": 9}),
        "stalled": example("cpu-classifier", podMetadata={"annotations": cannot_load}),
    }.items():
        apply(cluster, {**manifest, "metadata": {"name": name}}, namespace)
    wait_condition(cluster, namespace, "ready", "Ready", "True")
    wait_condition(cluster, namespace, "progressing", "Ready", "False", "WaitingForReplicas")
    wait_condition(cluster, namespace, "progressing", "Progressing", "True")
    wait_condition(cluster, namespace, "degraded", "Degraded", "True", "Unschedulable")
    wait_condition(cluster, namespace, "stalled", "Stalled", "True", "ModelLoadFailed")

    objects = cluster.kubectl("get", "modeldeployments", "-n", namespace, "-o", "json").stdout
    kstatus = health.verdicts(objects, "kstatus")
    argocd = health.verdicts(objects, "argocd")
    print(f"\nkstatus: {json.dumps(kstatus, indent=1)}\nargocd: {json.dumps(argocd, indent=1)}")

    assert kstatus["ready"]["status"] == "Current"
    assert argocd["ready"]["status"] == "Healthy"
    assert kstatus["progressing"]["status"] == "InProgress"
    assert kstatus["progressing"]["reason"] == "WaitingForReplicas"
    assert argocd["progressing"]["status"] == "Progressing"
    # A model that cannot be scheduled is Degraded but not Stalled (an autoscaler can add the node): kstatus
    # keeps it InProgress, never Current. A model that cannot load is Stalled: kstatus fails it at once.
    assert kstatus["degraded"]["status"] == "InProgress"
    assert kstatus["degraded"]["reason"] == "Unschedulable"
    assert argocd["degraded"]["status"] == "Degraded"
    assert argocd["degraded"]["message"].startswith("Unschedulable: ")
    assert (kstatus["stalled"]["status"], kstatus["stalled"]["reason"]) == ("Failed", "ModelLoadFailed")
    assert argocd["stalled"]["status"] == "Degraded"

    # A spec the operator has not acted on yet is never reported healthy, whatever the conditions say.
    operator.stop()
    cluster.kubectl("patch", "md", "ready", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    objects = cluster.kubectl("get", "modeldeployment", "ready", "-n", namespace, "-o", "json").stdout
    as_list = json.dumps({"kind": "List", "items": [json.loads(objects)]})
    stale = health.verdicts(as_list, "kstatus")["ready"]
    assert (stale["status"], stale["reason"]) == ("InProgress", "LatestGenerationNotObserved")
    assert health.verdicts(as_list, "argocd")["ready"]["status"] == "Progressing"


def gitops_objects(helm: Path, namespace: str, work_dir: Path) -> list[dict[str, Any]]:
    """What a GitOps tool would apply into `namespace`: the example models and the chart's namespaced objects."""
    built = subprocess.run(
        [str(helm.parent / "kubectl"), "kustomize", str(MODELS)], capture_output=True, text=True, check=True
    )
    models = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    for model in models:
        model["metadata"]["namespace"] = namespace
    values = {"watch": {"scope": "release"}, "rbac": {"aggregateToDefaultRoles": False}, "crds": {"install": False}}
    return models + render(helm, values, work_dir, release="md-gitops", namespace=namespace)


def server_side_apply(cluster: ClusterConnection, objects: list[dict[str, Any]]) -> None:
    cluster.kubectl(
        "apply", "--server-side", f"--field-manager={GITOPS_MANAGER}", "-f", "-", input=yaml.safe_dump_all(objects)
    )


def resource_versions(cluster: ClusterConnection, objects: list[dict[str, Any]]) -> dict[str, str]:
    versions = {}
    for obj in objects:
        metadata = obj["metadata"]
        live = cluster.kubectl("get", obj["kind"], metadata["name"], "-n", metadata["namespace"], "-o", "json")
        versions[f"{obj['kind']}/{metadata['name']}"] = json.loads(live.stdout)["metadata"]["resourceVersion"]
    return versions


def test_applying_the_same_manifests_twice_changes_nothing(
    cluster: ClusterConnection, crd_installed: None, helm: Path, namespace: str, tmp_path: Path
) -> None:
    objects = gitops_objects(helm, namespace, tmp_path)
    assert {obj["kind"] for obj in objects} >= {"ModelDeployment", "Deployment", "Role", "ServiceAccount", "Service"}
    server_side_apply(cluster, objects)

    # Controllers write status for a moment after creation (the Deployment's pods start); wait for quiet.
    def settled() -> dict[str, str] | None:
        before = resource_versions(cluster, objects)
        time.sleep(1)
        return before if resource_versions(cluster, objects) == before else None

    quiet = wait_until(settled, "the applied objects to stop changing")
    server_side_apply(cluster, objects)
    assert resource_versions(cluster, objects) == quiet, "the second apply wrote something"

    diff = cluster.kubectl(
        "diff", "--server-side", f"--field-manager={GITOPS_MANAGER}", "-f", "-",
        input=yaml.safe_dump_all(objects), check=False,
    )  # fmt: skip
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
