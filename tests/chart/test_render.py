"""The chart's rendered objects for combinations of values (helm template; no cluster), and helm lint."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_operator import chart_env
from chart_release import CHART, CRD_NAME, REPO, HelmError, container_env, of_kind, one, render, run_helm
from modeldeploy_operator.settings import OperatorSettings

RELEASE, NAMESPACE = "md", "modeldeploy-system"
FULLNAME = "md-modeldeploy"
OPERATOR_RULES = {
    ("serving.modeldeploy.dev", "modeldeployments"): {"get", "list", "watch"},
    ("serving.modeldeploy.dev", "modeldeployments/status"): {"patch"},
    ("serving.modeldeploy.dev", "modeldeployments/finalizers"): {"update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},
    ("apps", "replicasets"): {"list"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch"},
    ("", "pods"): {"list", "watch"},
    ("autoscaling", "horizontalpodautoscalers"): {"list", "watch"},
    ("", "events"): {"create"},
}


def rules_by_resource(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule or role["kind"] == "Role", rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def chart(helm: Path, tmp_path: Path) -> Render:
    """Renders the chart with the keyword arguments as values."""

    def render_with(**values: Any) -> list[dict[str, Any]]:
        return render(helm, values, tmp_path, release=RELEASE, namespace=NAMESPACE)

    return render_with


def test_defaults_install_crd_operator_rbac_metrics_and_pdb(chart: Any) -> None:
    objects = chart()
    kinds = sorted(f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects)
    assert kinds == sorted(
        [
            f"CustomResourceDefinition/{CRD_NAME}",
            f"ServiceAccount/{FULLNAME}",
            f"ClusterRole/{FULLNAME}",
            f"ClusterRoleBinding/{FULLNAME}",
            f"ClusterRole/{FULLNAME}-edit",
            f"ClusterRole/{FULLNAME}-view",
            f"Role/{FULLNAME}-leader-election",
            f"RoleBinding/{FULLNAME}-leader-election",
            f"Service/{FULLNAME}-metrics",
            f"Deployment/{FULLNAME}",
            f"PodDisruptionBudget/{FULLNAME}",
        ]
    )
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE and labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "modeldeploy-0.1.0"
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_operator_pod_is_hardened_probed_and_bounded(chart: Any) -> None:
    deployment = one(chart(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == FULLNAME
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["image"] == "ghcr.io/modeldeploy/operator:0.1.0"
    # Two replicas, spread over nodes, one leader.
    assert deployment["spec"]["replicas"] == 2
    anti_affinity = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti_affinity["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_operator_configuration_comes_from_values(chart: Any) -> None:
    objects = chart(
        operator={
            "runtimeImage": "registry.example/runtime:1.2.3",
            "logLevel": "DEBUG",
            "logFormat": "text",
            "resyncPeriodSeconds": 60,
            "maxWritesInFlight": 8,
            "maxObjectsInFlight": 64,
            "upgradeWaveSize": 3,
            "metricsScraperNamespace": "prometheus",
        },
        leaderElection={"leaseDurationSeconds": 30, "renewDeadlineSeconds": 20, "retryPeriodSeconds": 4},
    )
    env = container_env(one(objects, "Deployment"))
    assert env["MODELDEPLOY_RUNTIME_IMAGE"] == "registry.example/runtime:1.2.3"
    assert env["MODELDEPLOY_LOG_LEVEL"] == "DEBUG"
    assert env["MODELDEPLOY_LOG_FORMAT"] == "text"
    assert env["MODELDEPLOY_NAMESPACES"] == ""
    assert env["MODELDEPLOY_RESYNC_PERIOD_SECONDS"] == "60"
    assert env["MODELDEPLOY_MAX_WRITES_IN_FLIGHT"] == "8"
    assert env["MODELDEPLOY_MAX_OBJECTS_IN_FLIGHT"] == "64"
    assert env["MODELDEPLOY_UPGRADE_WAVE_SIZE"] == "3"
    assert env["MODELDEPLOY_METRICS_SCRAPER_NAMESPACE"] == "prometheus"
    assert env["MODELDEPLOY_LEADER_ELECTION"] == "true"
    assert env["MODELDEPLOY_LEADER_ELECTION_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MODELDEPLOY_LEADER_ELECTION_LEASE_NAME"] == FULLNAME
    assert env["MODELDEPLOY_LEADER_ELECTION_LEASE_DURATION_SECONDS"] == "30"
    assert env["MODELDEPLOY_LEADER_ELECTION_RENEW_DEADLINE_SECONDS"] == "20"
    assert env["MODELDEPLOY_LEADER_ELECTION_RETRY_PERIOD_SECONDS"] == "4"


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watch": {"scope": "namespaces", "namespaces": ["team-a", "team-b"]}},
        {"watch": {"scope": "release"}, "replicaCount": 1, "leaderElection": {"enabled": False}},
        {"metrics": {"enabled": False}, "operator": {"logLevel": "WARNING", "handlerTimeoutSeconds": 30}},
    ],
    ids=["defaults", "namespaces", "release-single", "no-metrics"],
)
def test_the_operator_accepts_the_configuration_the_chart_gives_it(chart: Any, values: dict[str, Any]) -> None:
    settings = OperatorSettings(**_lowercase_env(chart_env(one(chart(**values), "Deployment"), NAMESPACE)))
    scope = values.get("watch", {}).get("scope", "cluster")
    expected_namespaces = {"cluster": [], "release": [NAMESPACE], "namespaces": ["team-a", "team-b"]}[scope]
    assert settings.namespaces == expected_namespaces
    assert settings.leader_election is values.get("leaderElection", {}).get("enabled", True)
    assert settings.metrics_port == (9090 if values.get("metrics", {}).get("enabled", True) else 0)


def _lowercase_env(env: dict[str, str]) -> dict[str, str]:
    # OperatorSettings reads MODELDEPLOY_* from the environment; here the same names go in as arguments.
    return {key.removeprefix("MODELDEPLOY_").lower(): value for key, value in env.items()}


def test_cluster_scope_grants_exactly_the_operator_rules_cluster_wide(chart: Any) -> None:
    objects = chart()
    assert rules_by_resource(one(objects, "ClusterRole", FULLNAME)) == OPERATOR_RULES
    binding = one(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # Nothing in any rule reaches Secrets, ConfigMaps, nodes, CRDs or a wildcard.
    everything = [rule for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role") for rule in role["rules"]]
    for rule in everything:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert not {"secrets", "configmaps", "nodes", "customresourcedefinitions"} & set(rule["resources"])


def test_namespaces_scope_grants_a_role_in_each_namespace_and_nothing_cluster_wide(chart: Any) -> None:
    objects = chart(
        watch={"scope": "namespaces", "namespaces": ["team-a", "team-b"]}, rbac={"aggregateToDefaultRoles": False}
    )
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    roles = {
        role["metadata"]["namespace"]: role for role in of_kind(objects, "Role") if role["metadata"]["name"] == FULLNAME
    }
    assert sorted(roles) == ["team-a", "team-b"]
    for role in roles.values():
        assert rules_by_resource(role) == OPERATOR_RULES
    bindings = [b for b in of_kind(objects, "RoleBinding") if b["metadata"]["name"] == FULLNAME]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert container_env(one(objects, "Deployment"))["MODELDEPLOY_NAMESPACES"] == "team-a,team-b"


def test_release_scope_grants_one_role_in_the_release_namespace(chart: Any) -> None:
    objects = chart(watch={"scope": "release"})
    role = one(objects, "Role", FULLNAME)
    assert role["metadata"]["namespace"] == NAMESPACE and rules_by_resource(role) == OPERATOR_RULES
    assert container_env(one(objects, "Deployment"))["MODELDEPLOY_NAMESPACES"] == NAMESPACE
    assert [r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")] == [f"{FULLNAME}-edit", f"{FULLNAME}-view"]


def test_leader_election_role_reaches_only_its_lease(chart: Any) -> None:
    role = one(chart(leaderElection={"leaseName": "my-lease"}), "Role", f"{FULLNAME}-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["my-lease"],
            "verbs": ["get", "update"],
        },
    ]


def test_single_replica_without_leader_election_has_no_lease_role_and_no_pdb(chart: Any) -> None:
    objects = chart(replicaCount=1, leaderElection={"enabled": False})
    assert [r["metadata"]["name"] for r in of_kind(objects, "Role")] == []
    assert of_kind(objects, "PodDisruptionBudget") == []
    env = container_env(one(objects, "Deployment"))
    assert env["MODELDEPLOY_LEADER_ELECTION"] == "false"
    assert not [name for name in env if name.startswith("MODELDEPLOY_LEADER_ELECTION_")]


def test_pdb_keeps_one_operator_through_drains(chart: Any) -> None:
    pdb = one(chart(replicaCount=3), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(chart(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert of_kind(chart(replicaCount=1), "PodDisruptionBudget") == []


def test_crd_is_kept_on_uninstall_unless_asked(chart: Any) -> None:
    kept = one(chart(), "CustomResourceDefinition")
    assert kept["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    not_kept = one(chart(crds={"keep": False}), "CustomResourceDefinition")
    assert "annotations" not in not_kept["metadata"]
    assert of_kind(chart(crds={"install": False}), "CustomResourceDefinition") == []


def test_chart_crd_is_the_generated_crd(chart: Any) -> None:
    generated = yaml.safe_load((REPO / "crds" / f"{CRD_NAME}.yaml").read_text())
    rendered = one(chart(), "CustomResourceDefinition")
    assert rendered["spec"] == generated["spec"]
    assert rendered["metadata"]["name"] == generated["metadata"]["name"]
    assert generated["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items()


def test_chart_crd_template_is_up_to_date() -> None:
    renderer = REPO / "charts" / "render_crd_template.py"
    result = subprocess.run([sys.executable, str(renderer)], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout == (CHART / "templates" / "crd.yaml").read_text(), "run `make crds`"


def test_image_digest_wins_over_tag(chart: Any) -> None:
    digest = "sha256:" + "a" * 64
    image = one(chart(image={"tag": "9.9.9", "digest": digest}), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]
    assert image == f"ghcr.io/modeldeploy/operator@{digest}"
    tagged = one(chart(image={"tag": "9.9.9"}), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert tagged == "ghcr.io/modeldeploy/operator:9.9.9"


def test_metrics_off_removes_the_service_and_the_port(chart: Any) -> None:
    objects = chart(metrics={"enabled": False, "serviceMonitor": {"enabled": True}})
    assert of_kind(objects, "Service") == [] and of_kind(objects, "ServiceMonitor") == []
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [port["name"] for port in container["ports"]] == ["health"]
    assert container_env(one(objects, "Deployment"))["MODELDEPLOY_METRICS_PORT"] == "0"


def test_service_monitor_scrapes_the_metrics_port(chart: Any) -> None:
    objects = chart(
        metrics={"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "interval": "15s"}}
    )
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_existing_service_account(chart: Any) -> None:
    objects = chart(serviceAccount={"create": False, "name": "platform-operator"})
    assert of_kind(objects, "ServiceAccount") == []
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-operator"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicaCount": 2, "leaderElection": {"enabled": False}},
            "replicaCount > 1 needs leaderElection.enabled=true",
        ),
        ({"watch": {"scope": "namespaces"}}, "/watch/namespaces"),
        ({"watch": {"scope": "everywhere"}}, "/watch/scope"),
        ({"watch": {"scope": "namespaces", "namespaces": ["Not_A_Namespace"]}}, "/watch/namespaces/0"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"leaderElection": {"renewDeadlineSeconds": 15}}, "renewDeadlineSeconds must be less than"),
        ({"leaderElection": {"retryPeriodSeconds": 10}}, "retryPeriodSeconds x 1.2 must be less than"),
        ({"podDisruptionBudget": {"minAvailable": 2}}, "minAvailable must be less than replicaCount"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"operator": {"logLevel": "verbose"}}, "/operator/logLevel"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_values_fail_with_the_field_named(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        chart(**values)


@pytest.mark.parametrize(
    "values",
    [[], ["--set", "watch.scope=namespaces", "--set", "watch.namespaces={a,b}"], ["--set", "crds.keep=false"]],
    ids=["defaults", "namespaces", "crds-not-kept"],
)
def test_helm_lint_strict(helm: Path, values: list[str]) -> None:
    run_helm(helm, "lint", "--strict", str(CHART), *values)


def test_the_built_helm_knows_its_version_and_renders_without_a_cluster(helm: Path) -> None:
    """The ldflags of helm's own release build: without them, `helm template` assumed Kubernetes 1.20 and refused the
    chart's kubeVersion."""
    versions = dict(line.split("=", 1) for line in (REPO / "devcluster" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))  # fmt: skip
    assert f'Version:"{versions["HELM_VERSION"]}"' in run_helm(helm, "version")
    rendered = run_helm(helm, "template", "md", str(CHART), "--namespace", "modeldeploy-system")
    assert "kind: Deployment" in rendered
