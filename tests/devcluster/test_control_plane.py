"""The control plane itself: health, garbage collection, service-account identities under RBAC."""

import pytest
from lightkube import ApiError, Client
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import ConfigMap, Pod, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from modeldeploy_devcluster import ClusterConnection
from modeldeploy_devcluster.testing import deployment_manifest, wait_until


def test_readyz_answers(cluster: ClusterConnection) -> None:
    assert cluster.server.startswith("https://127.0.0.1:")
    verbose = cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in verbose
    assert "[+]etcd ok" in verbose


def test_deleting_a_deployment_garbage_collects_its_replicasets_and_pods(
    cluster: ClusterConnection, namespace: str
) -> None:
    client = cluster.client()
    client.apply(from_dict(deployment_manifest("doomed", namespace, replicas=2)))
    wait_until(lambda: len(_running_pods(client, namespace)) == 2, "two running pods")
    assert len(list(client.list(ReplicaSet, namespace=namespace))) == 1

    client.delete(Deployment, "doomed", namespace=namespace)

    wait_until(lambda: not list(client.list(ReplicaSet, namespace=namespace)), "the ReplicaSet to be collected")
    wait_until(lambda: not list(client.list(Pod, namespace=namespace)), "the pods to be collected")


def _running_pods(client: Client, namespace: str) -> list[Pod]:
    return [p for p in client.list(Pod, namespace=namespace) if p.status and p.status.phase == "Running"]


def test_deleting_an_owner_deletes_its_dependents(cluster: ClusterConnection, namespace: str) -> None:
    client = cluster.client()
    owner = client.create(ConfigMap(metadata=ObjectMeta(name="owner", namespace=namespace)))
    assert owner.metadata is not None and owner.metadata.uid is not None
    reference = OwnerReference(apiVersion="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    client.create(ConfigMap(metadata=ObjectMeta(name="child", namespace=namespace, ownerReferences=[reference])))
    client.create(ConfigMap(metadata=ObjectMeta(name="bystander", namespace=namespace)))

    client.delete(ConfigMap, "owner", namespace=namespace)

    wait_until(
        lambda: (
            {cm.metadata.name for cm in client.list(ConfigMap, namespace=namespace) if cm.metadata}
            == {"bystander", "kube-root-ca.crt"}
        ),
        "the child ConfigMap to be collected",
    )


def _grant_configmap_reader(client: Client, namespace: str) -> None:
    client.create(ServiceAccount(metadata=ObjectMeta(name="reader", namespace=namespace)))
    client.apply(
        from_dict(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "configmap-reader", "namespace": namespace},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            }
        )
    )
    client.apply(
        from_dict(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            }
        )
    )
    assert client.get(Role, "configmap-reader", namespace=namespace)
    assert client.get(RoleBinding, "reader", namespace=namespace)


def test_service_account_token_is_refused_outside_its_role(cluster: ClusterConnection, namespace: str) -> None:
    _grant_configmap_reader(cluster.client(), namespace)
    kubeconfig = cluster.service_account_kubeconfig(namespace, "reader")

    whoami = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig)
    assert whoami.stdout == f"system:serviceaccount:{namespace}:reader"

    def list_configmaps() -> str | None:
        listed = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "name", check=False, kubeconfig=kubeconfig)
        return listed.stdout if listed.returncode == 0 else None

    # RBAC caches: a fresh binding takes a moment to apply.
    assert "configmap/kube-root-ca.crt" in wait_until(list_configmaps, "the RoleBinding to take effect")

    other_resource = cluster.kubectl("get", "secrets", "-n", namespace, check=False, kubeconfig=kubeconfig)
    assert other_resource.returncode != 0
    assert "Forbidden" in other_resource.stderr and 'cannot list resource "secrets"' in other_resource.stderr
    other_namespace = cluster.kubectl("get", "configmaps", "-n", "default", check=False, kubeconfig=kubeconfig)
    assert other_namespace.returncode != 0 and "Forbidden" in other_namespace.stderr

    restricted = cluster.client(kubeconfig=kubeconfig)
    with pytest.raises(ApiError) as refused:
        restricted.create(ConfigMap(metadata=ObjectMeta(name="sneaky", namespace=namespace)))
    assert refused.value.status.code == 403
