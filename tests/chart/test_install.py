"""helm install into the real control plane, then the operator with the chart's ServiceAccount token.

The proof of least privilege has two halves. Every API call the operator makes through a full reconcile (create,
drift repair, scale, status, events, leader election, release) is recorded by a proxy and must be granted; and
every verb the chart grants must have been used, but for the one the apiserver checks without a request of ours.
Then the token is shown to be refused what the operator never needs: Secrets, other kinds, deletes.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from chart_api_recorder import rbac_requests, recording_proxy
from chart_models import apply, example, get_md, wait_condition
from chart_operator import OperatorStarter, chart_env
from chart_release import FAST_LEADER_ELECTION, Release, one
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace
from modeldeploy_devcluster.connection import ClusterConnection
from modeldeploy_devcluster.kwok import EXIT_CODE_ANNOTATION, SIMULATE_ANNOTATION, Simulation
from modeldeploy_devcluster.pytest_plugin import TEST_NAMESPACE_LABEL
from modeldeploy_devcluster.testing import wait_until

GROUP = "serving.modeldeploy.dev"
# The apiserver checks it only when admission plugin OwnerReferencesPermissionEnforcement is on (it is off in the
# test cluster): whoever sets blockOwnerDeletion on a child must be allowed to update the owner's finalizers.
CHECKED_WITHOUT_A_REQUEST = {("update", GROUP, "modeldeployments/finalizers")}


def granted_to_operator(release: Release) -> set[tuple[str, str, str]]:
    """(verb, group, resource) of every rule bound to the operator's ServiceAccount by the installed release."""
    bound = set()
    for obj in release.manifest():
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            subject_names = {s["name"] for s in obj["subjects"] if s["kind"] == "ServiceAccount"}
            if release.fullname in subject_names:
                bound.add((obj["roleRef"]["kind"], obj["roleRef"]["name"]))
    granted: set[tuple[str, str, str]] = set()
    for obj in release.manifest():
        if (obj["kind"], obj["metadata"]["name"]) in bound:
            for rule in obj["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        granted.update((verb, group, resource) for verb in rule["verbs"])
    return granted


def test_operator_with_the_chart_token_uses_exactly_the_granted_verbs(
    cluster: ClusterConnection, release: Release, run_operator: OperatorStarter, tmp_path: Path
) -> None:
    notes = release.install({"leaderElection": FAST_LEADER_ELECTION})
    assert f"rollout status deployment/{release.fullname}" in notes and "kept on `helm uninstall`" in notes

    deployment = release.get("deployment", release.fullname)
    assert deployment is not None
    env = chart_env(deployment, release.namespace)
    token = cluster.service_account_kubeconfig(release.namespace, release.fullname)
    namespace = release.namespace
    with recording_proxy(cluster.server, cluster.ca_pem) as recorder:
        kubeconfig = recorder.kubeconfig(token, tmp_path / "through-recorder.kubeconfig")
        # The chart grants cluster-wide; the process watches only this test's namespace, which no other test's
        # operator touches.
        operator = run_operator(kubeconfig, env, [namespace])
        operator.wait_for_log("became the leader")

        apply(cluster, example("iris-classifier"), namespace)
        ready = wait_condition(cluster, namespace, "iris-classifier", "Ready", "True")
        assert ready["status"]["url"] == f"http://iris-classifier.{namespace}.svc.cluster.local"

        # Drift: the deleted Service is created again (server-side apply answered 201).
        service_uid = cluster.kubectl(
            "get", "service", "iris-classifier", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
        ).stdout
        cluster.kubectl("delete", "service", "iris-classifier", "-n", namespace)
        wait_until(
            lambda: (
                cluster.kubectl(
                    "get", "service", "iris-classifier", "-n", namespace, "-o", "jsonpath={.metadata.uid}", check=False
                ).stdout
                not in ("", service_uid)
            ),
            "the operator to restore the deleted Service",
        )
        # A spec change rolls out; a failure is reported with a Warning event.
        cluster.kubectl("scale", "modeldeployment/iris-classifier", "-n", namespace, "--replicas=2")
        wait_until(
            lambda: (get_md(cluster, namespace, "iris-classifier") or {}).get("status", {}).get("readyReplicas") == 2,
            "two ready replicas",
        )
        # An update whose model cannot load is rolled back to the template its ReplicaSet kept.
        cannot_load = {SIMULATE_ANNOTATION: Simulation.CRASH_LOOP.value, EXIT_CODE_ANNOTATION: "3"}
        apply(cluster, example("iris-classifier", replicas=2, podMetadata={"annotations": cannot_load}), namespace)
        wait_condition(cluster, namespace, "iris-classifier", "RolledBack", "True", "ModelLoadFailed")
        apply(cluster, {**example("iris-classifier", gpu={"count": 9}), "metadata": {"name": "too-big"}}, namespace)
        wait_condition(cluster, namespace, "too-big", "Degraded", "True", "Unschedulable")
        # Someone else's object of each kind with a ModelDeployment's name: the create-only apply is refused, and
        # one read (get) of the object tells that it is not ours.
        for foreign in _foreign_objects():
            apply(cluster, foreign, namespace)
            name = foreign["metadata"]["name"]
            apply(cluster, {**example("iris-classifier"), "metadata": {"name": name}}, namespace)
            wait_condition(cluster, namespace, name, "Ready", "False", "ChildConflict")

        operator.send(signal.SIGTERM)
        assert operator.wait_exit(timeout=30) == 0, operator.log_text()[-3000:]
        lease = json.loads(cluster.kubectl("get", "lease", release.fullname, "-n", namespace, "-o", "json").stdout)
        assert lease["spec"]["holderIdentity"] == "", "a leader that stops releases its Lease"

    records = recorder.records
    assert [r for r in records if r.status in (401, 403)] == [], "the operator was refused something"
    checks = [check for record in records for check in rbac_requests(record)]
    assert {check.namespace for check in checks} == {namespace}
    lease_checks = [c for c in checks if c.resource == "leases" and c.verb != "create"]
    assert lease_checks and {c.name for c in lease_checks} == {release.fullname}
    used = {(check.verb, check.group, check.resource) for check in checks}
    granted = granted_to_operator(release)
    assert used - granted == set(), "used without a grant (the proxy saw no 403: the cluster grants more?)"
    assert granted - used == CHECKED_WITHOUT_A_REQUEST, "granted but never used"
    # Every verb the operator used, listed for the reader of the test log.
    print(*sorted(used), sep="\n")


def _foreign_objects() -> list[dict[str, Any]]:
    """A Service, a NetworkPolicy and a Deployment (of no replicas) that the operator did not create."""
    labels = {"app": "legacy"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "taken-service", "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "taken-policy", "labels": labels},
            "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "taken-deployment", "labels": labels},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/legacy:1"}]},
                },
            },
        },
    ]


@pytest.mark.parametrize(
    ("verb", "resource", "where"),
    [
        ("get", "secrets", "own"),
        ("list", "secrets", "all"),
        ("list", "configmaps", "own"),
        ("deletecollection", "modeldeployments.serving.modeldeploy.dev", "own"),
        ("create", "modeldeployments.serving.modeldeploy.dev", "own"),
        ("update", "modeldeployments.serving.modeldeploy.dev", "own"),
        ("delete", "modeldeployments.serving.modeldeploy.dev", "own"),
        ("delete", "deployments.apps", "own"),
        ("update", "deployments.apps", "own"),
        ("delete", "services", "own"),
        ("create", "pods", "own"),
        ("delete", "pods", "own"),
        ("create", "pods/exec", "own"),
        ("list", "nodes", "all"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", "all"),
        ("create", "roles.rbac.authorization.k8s.io", "own"),
        ("create", "serviceaccounts/token", "own"),
        ("delete", "leases.coordination.k8s.io", "own"),
        ("update", "leases.coordination.k8s.io/another-lease", "own"),
        ("patch", "events", "own"),
    ],
)
def test_the_chart_token_is_refused_what_the_operator_never_needs(
    cluster: ClusterConnection, installed_release: tuple[Release, Path], verb: str, resource: str, where: str
) -> None:
    release, token = installed_release
    scope = ["--all-namespaces"] if where == "all" else ["-n", release.namespace]
    args = ["auth", "can-i", verb, resource, *scope]
    answer = cluster.kubectl(*args, kubeconfig=token, check=False)
    assert answer.stdout.strip() == "no", f"kubectl {' '.join(args)}: {answer.stdout}{answer.stderr}"


def test_the_chart_token_cannot_read_secrets(
    cluster: ClusterConnection, installed_release: tuple[Release, Path]
) -> None:
    release, token = installed_release
    cluster.kubectl(
        "create", "secret", "generic", "weights-credentials", "--from-literal=key=s3cr3t", "-n", release.namespace
    )
    for args in (["get", "secret", "weights-credentials", "-n", release.namespace], ["get", "secrets", "-A"]):
        refused = cluster.kubectl(*args, kubeconfig=token, check=False)
        assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused.stdout
        assert "s3cr3t" not in refused.stdout + refused.stderr


@pytest.fixture(scope="module")
def installed_release(
    cluster: ClusterConnection, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Release, Path]]:
    """The chart with its defaults (cluster scope, leader election), and a token of its ServiceAccount.

    One release for every check of this module that only reads RBAC, in a namespace of its own.
    """
    with scratch_namespaces(cluster, ["md-rbac-" + uuid.uuid4().hex[:6]]) as (namespace,):
        release = Release(helm, cluster, f"md-{uuid.uuid4().hex[:6]}", namespace, tmp_path_factory.mktemp("rbac"))
        release.install({})
        try:
            yield release, cluster.service_account_kubeconfig(namespace, release.fullname)
        finally:
            release.uninstall()


@contextmanager
def scratch_namespaces(cluster: ClusterConnection, names: list[str]) -> Iterator[list[str]]:
    client = cluster.client()
    for name in names:
        client.create(Namespace(metadata=ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"})))
    try:
        yield names
    finally:
        for name in names:
            try:
                client.delete(Namespace, name)
            except ApiError as error:
                if error.status.code != 404:
                    raise


@pytest.fixture
def watched_namespaces(cluster: ClusterConnection, namespace: str) -> Iterator[list[str]]:
    """Two namespaces of their own for a release that watches a list."""
    with scratch_namespaces(cluster, [f"{namespace[:50]}-w{index}" for index in (1, 2)]) as names:
        yield names


def test_namespaces_scope_reconciles_its_namespaces_with_roles_only(
    cluster: ClusterConnection,
    crd_installed: None,
    release: Release,
    watched_namespaces: list[str],
    run_operator: OperatorStarter,
) -> None:
    values: dict[str, Any] = {
        "watch": {"scope": "namespaces", "namespaces": watched_namespaces},
        "rbac": {"aggregateToDefaultRoles": False},
        "crds": {"install": False},
        "replicaCount": 1,
        "leaderElection": FAST_LEADER_ELECTION,
    }
    release.install(values)
    kinds = {obj["kind"] for obj in release.manifest()}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    token = cluster.service_account_kubeconfig(release.namespace, release.fullname)
    deployment = release.get("deployment", release.fullname)
    assert deployment is not None
    env = chart_env(deployment, release.namespace)
    operator = run_operator(token, env, env["MODELDEPLOY_NAMESPACES"].split(","))
    operator.wait_for_log("became the leader")
    for watched in watched_namespaces:
        apply(cluster, example("cpu-classifier"), watched)
    for watched in watched_namespaces:
        wait_condition(cluster, watched, "cpu-classifier", "Ready", "True")
    # A refusal from the API server reads "Forbidden" (its reason) or "is forbidden" (its message). Looking for
    # "403" instead matched the random release name (md-0ff403) in the leader-election log line.
    assert "forbidden" not in operator.log_text().lower()

    def can(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", *args, kubeconfig=token, check=False).stdout.strip()

    assert can("list", "modeldeployments.serving.modeldeploy.dev", "-n", watched_namespaces[0]) == "yes"
    assert can("list", "modeldeployments.serving.modeldeploy.dev", "-n", release.namespace) == "no"
    assert can("list", "modeldeployments.serving.modeldeploy.dev", "--all-namespaces") == "no"
    assert can("patch", "deployments.apps", "-n", "default") == "no"
    assert one(release.manifest(), "Deployment")["spec"]["replicas"] == 1
