"""kind-config.yaml, the GitOps examples and docs/install.md stay true to the chart and the repository."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from chart_release import CHART, REPO, one, render
from modeldeploy_devcluster.nodes import GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE

GITOPS = REPO / "examples" / "gitops"
INSTALL_DOC = REPO / "docs" / "install.md"


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def test_kind_cluster_has_a_cpu_worker_and_a_worker_like_a_gpu_node() -> None:
    config = load(REPO / "kind-config.yaml")
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 2
    (gpu_worker,) = [node for node in config["nodes"] if node.get("labels", {}).get("nvidia.com/gpu.present") == "true"]
    (join,) = [yaml.safe_load(patch) for patch in gpu_worker["kubeadmConfigPatches"]]
    # The same taint as the simulated GPU nodes the tests run on, which the operator's GPU pods tolerate.
    assert join["nodeRegistration"]["taints"] == [
        {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
    ]
    assert {"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"} in gpu_worker[
        "extraMounts"
    ]
    cpu_workers = [node for node in config["nodes"] if node["role"] == "worker" and node is not gpu_worker]
    assert cpu_workers and all("kubeadmConfigPatches" not in node for node in cpu_workers)


def test_argocd_applications_point_at_the_chart_and_models_with_values_the_chart_accepts(
    helm: Path, tmp_path: Path
) -> None:
    operator = load(GITOPS / "argocd" / "operator.yaml")
    assert REPO / operator["spec"]["source"]["path"] == CHART
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]
    objects = render(helm, operator["spec"]["source"]["helm"]["valuesObject"], tmp_path)
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    models = load(GITOPS / "argocd" / "models.yaml")
    assert (REPO / models["spec"]["source"]["path"] / "kustomization.yaml").is_file()


def test_flux_objects_point_at_the_chart_and_models_with_values_the_chart_accepts(helm: Path, tmp_path: Path) -> None:
    release = load(GITOPS / "flux" / "helmrelease.yaml")
    assert (REPO / release["spec"]["chart"]["spec"]["chart"]).resolve() == CHART
    render(helm, release["spec"]["values"], tmp_path)
    kustomization = load(GITOPS / "flux" / "models.yaml")
    assert kustomization["spec"]["wait"] is True
    assert (REPO / kustomization["spec"]["path"] / "kustomization.yaml").is_file()
    listed = load(GITOPS / "flux" / "kustomization.yaml")["resources"]
    assert sorted(listed) == sorted(p.name for p in (GITOPS / "flux").glob("*.yaml") if p.name != "kustomization.yaml")


def test_install_guide_names_only_files_that_exist() -> None:
    text = INSTALL_DOC.read_text()
    named = set(
        re.findall(
            r"(?<![\w/.-])((?:charts|examples|operator|runtime|docs)/[\w./-]+\.(?:ya?ml|py|md)|kind-config\.yaml)", text
        )
    )
    named |= set(re.findall(r"-f ([\w/.-]+Dockerfile)", text))
    assert len(named) > 8, named
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert missing == []
