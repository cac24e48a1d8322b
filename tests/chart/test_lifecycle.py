"""The chart against the real control plane: server-side validation, upgrade with a changed CRD, uninstall."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_models import apply, example, get_md, wait_condition
from chart_operator import OperatorStarter, chart_env
from chart_release import CHART, CRD_NAME, FAST_LEADER_ELECTION, REPO, Release, render, run_helm
from modeldeploy_devcluster.connection import ClusterConnection, KubectlError
from modeldeploy_devcluster.testing import wait_until

SINGLE_REPLICA: dict[str, Any] = {
    "watch": {"scope": "release"},
    "replicaCount": 1,
    "leaderElection": FAST_LEADER_ELECTION,
}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watch": {"scope": "namespaces", "namespaces": ["default", "kube-public"]}},
        {"watch": {"scope": "release"}, "replicaCount": 1, "leaderElection": {"enabled": False}},
        {
            "metrics": {"service": {"type": "NodePort"}},
            "serviceAccount": {"annotations": {"iam.example/role": "modeldeploy"}},
            "podDisruptionBudget": {"minAvailable": "50%"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
            ],
            "operator": {"extraEnv": [{"name": "MODELDEPLOY_WATCH_SERVER_TIMEOUT_SECONDS", "value": "120"}]},
        },
    ],
    ids=["defaults", "namespaces", "release-single", "extras"],
)
def test_rendered_chart_passes_server_side_validation(
    cluster: ClusterConnection, helm: Path, namespace: str, tmp_path: Path, values: dict[str, Any]
) -> None:
    """Stronger than a schema check offline: the apiserver's own OpenAPI, admission and the CRD decide.

    (The ServiceMonitor needs the Prometheus operator's CRD, which this cluster lacks: test_render covers it.)
    """
    objects = render(helm, values, tmp_path, release="md-validate", namespace=namespace)
    manifest = yaml.safe_dump_all(objects)
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts", "--field-manager=chart-validation",
        "-f", "-", input=manifest,
    )  # fmt: skip
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout


def _crd_renderer() -> Any:
    spec = importlib.util.spec_from_file_location("render_crd_template", REPO / "charts" / "render_crd_template.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chart_with_changed_crd(work_dir: Path) -> Path:
    """A copy of the chart, version 0.1.1, whose CRD gains a spec field and a printer column."""
    chart = work_dir / "modeldeploy"
    shutil.copytree(CHART, chart)
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("\nversion: 0.1.0\n", "\nversion: 0.1.1\n"))
    renderer = _crd_renderer()
    crd = yaml.safe_load(renderer.GENERATED_CRD.read_text())
    (version,) = crd["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["canary"] = {
        "type": "string",
        "description": "A field that only the upgraded chart's CRD knows.",
    }
    version["additionalPrinterColumns"].append({"name": "Canary", "type": "string", "jsonPath": ".spec.canary"})
    (chart / "templates" / "crd.yaml").write_text(renderer.render_template(crd))
    return chart


def crd_spec_properties(cluster: ClusterConnection) -> dict[str, Any]:
    crd = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    properties: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    return properties


def test_helm_upgrade_applies_a_changed_crd(
    cluster: ClusterConnection, release: Release, helm: Path, tmp_path: Path
) -> None:
    release.install(SINGLE_REPLICA)
    assert "canary" not in crd_spec_properties(cluster)
    with_canary = {**example("cpu-classifier"), "metadata": {"name": "canary"}}
    with_canary["spec"]["canary"] = "blue"
    with pytest.raises(KubectlError, match="canary: field not declared in schema"):
        apply(cluster, with_canary, release.namespace)

    release.upgrade(SINGLE_REPLICA, chart=chart_with_changed_crd(tmp_path))
    assert crd_spec_properties(cluster)["canary"]["type"] == "string"
    apply(cluster, with_canary, release.namespace)
    assert (get_md(cluster, release.namespace, "canary") or {})["spec"]["canary"] == "blue"
    columns = cluster.kubectl("get", "md", "canary", "-n", release.namespace).stdout.split("\n")[0].split()
    assert "CANARY" in columns
    history = json.loads(
        run_helm(helm, "history", release.name, "-n", release.namespace, "-o", "json", kubeconfig=cluster.kubeconfig)
    )
    assert [(h["revision"], h["chart"], h["status"]) for h in history] == [
        (1, "modeldeploy-0.1.0", "superseded"),
        (2, "modeldeploy-0.1.1", "deployed"),
    ]

    # And back: the CRD follows the chart down as well (the object that used the field goes first).
    cluster.kubectl("delete", "md", "canary", "-n", release.namespace)
    release.upgrade(SINGLE_REPLICA)
    assert "canary" not in crd_spec_properties(cluster)


def test_uninstall_keeps_the_crd_and_every_modeldeployment(
    cluster: ClusterConnection, release: Release, run_operator: OperatorStarter
) -> None:
    release.install(SINGLE_REPLICA)
    namespace = release.namespace
    deployment = release.get("deployment", release.fullname)
    assert deployment is not None
    token = cluster.service_account_kubeconfig(namespace, release.fullname)
    operator = run_operator(token, chart_env(deployment, namespace), [namespace])
    apply(cluster, example("cpu-classifier"), namespace)
    wait_condition(cluster, namespace, "cpu-classifier", "Ready", "True")
    operator.stop()
    installed = [(obj["kind"], obj["metadata"]["name"]) for obj in release.manifest()]

    release.uninstall()

    assert run_helm(release.helm, "list", "-n", namespace, "-q", kubeconfig=cluster.kubeconfig).strip() == ""
    for kind, name in installed:
        still_there = cluster.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0
        assert still_there == (kind == "CustomResourceDefinition"), f"{kind}/{name} after uninstall"
    # The user's model keeps serving: the ModelDeployment, its Deployment and its Service stay.
    assert get_md(cluster, namespace, "cpu-classifier") is not None
    assert cluster.kubectl("get", "deployment,service", "cpu-classifier", "-n", namespace).returncode == 0
    # ... and it can still be deleted without an operator: no finalizer holds it.
    cluster.kubectl("delete", "md", "cpu-classifier", "-n", namespace, "--timeout=60s")
    wait_until(
        lambda: cluster.kubectl("get", "deployment", "cpu-classifier", "-n", namespace, check=False).returncode != 0,
        "garbage collection of the deleted ModelDeployment's Deployment",
    )
