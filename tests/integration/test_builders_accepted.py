"""Property: any valid spec gives a ModelDeployment the CRD accepts and children the apiserver accepts
(server-side dry-run: the real OpenAPI validation, defaulting and admission, nothing stored)."""

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightkube import ApiError, Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType
from modeldeploy_operator.api import ModelDeployment
from modeldeploy_operator.kube import ModelDeploymentResource
from modeldeploy_operator.manifests import build_deployment, build_network_policy, build_service
from modeldeploy_operator.manifests.deployment import BuildOptions

names = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
quantities = st.sampled_from(["100m", "1", "2", "0.5", "1500m", "512Mi", "8Gi", "1G", "2e3"])
memory = st.sampled_from(["256Mi", "1Gi", "8Gi", "1G"])
uris = st.one_of(
    st.builds(lambda claim, path: f"pvc://{claim}/{path}.pt", names, names),
    st.builds(lambda host, path: f"https://{host}.example.com/models/{path}.pt2", names, names),
    st.builds(lambda path: f"/opt/models/{path}.pt", names).map(lambda path: f"file://{path}"),
)
products = st.sampled_from(["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"])
gpu = st.one_of(
    st.just({"count": 0}),
    st.fixed_dictionaries(
        {"count": st.integers(1, 16)},
        optional={
            "product": products,
            "resourceName": st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "amd.com/gpu"]),
            "sharedMemory": memory,
        },
    ),
    st.fixed_dictionaries(
        {"count": st.integers(1, 8), "products": st.lists(products, min_size=1, max_size=3, unique=True)}
    ),
)
runtime = st.fixed_dictionaries(
    {},
    optional={
        "image": st.sampled_from(["registry.local/runtime:1", "ghcr.io/acme/rt@sha256:" + "a" * 64]),
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        # A CPU request or a CPU limit (passed to the runtime through the Downward API), never both: a random
        # limit below the request would be the schema's refusal, not the builders'.
        "resources": st.one_of(
            st.builds(lambda cpu: {"requests": {"cpu": cpu}}, quantities),
            st.builds(lambda cpu: {"limits": {"cpu": cpu}}, quantities),
        ),
        "maxBatchSize": st.integers(1, 1024),
        "maxBatchDelayMs": st.integers(0, 10000),
        "maxQueueSize": st.integers(1, 100000),
        "dtype": st.sampled_from(["float32", "float16", "bfloat16"]),
        "startupTimeoutSeconds": st.integers(30, 86400),
        "env": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
                    "value": st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10),
                }
            ),
            max_size=3,
            unique_by=lambda e: e["name"],
        ),
    },
)
scheduling = st.fixed_dictionaries(
    {},
    optional={
        "nodeSelector": st.dictionaries(st.sampled_from(["zone", "pool", "tier"]), names, max_size=2),
        "tolerations": st.lists(
            st.fixed_dictionaries(
                {"key": st.sampled_from(["dedicated", "spot"]), "operator": st.just("Exists")},
                optional={"effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"])},
            ),
            max_size=2,
        ),
        "priorityClassName": names,
        "runtimeClassName": st.just("nvidia"),
    },
)
access = st.fixed_dictionaries(
    {},
    optional={
        "apiKeys": st.fixed_dictionaries(
            {"secretName": names},
            optional={
                "limits": st.fixed_dictionaries(
                    {},
                    optional={
                        "requestsPerSecond": st.floats(0.01, 1000.0),
                        "requestsBurst": st.integers(1, 1000),
                        "tokensPerMinute": st.integers(1, 10**6),
                    },
                )
            },
        ),
        "audit": st.fixed_dictionaries({}, optional={"enabled": st.booleans(), "payloads": st.booleans()}),
        "tls": st.fixed_dictionaries({"secretName": names}),
        "allowedFrom": st.lists(
            st.one_of(
                st.builds(lambda team: {"namespaceSelector": {"matchLabels": {"team": team}}}, names),
                st.builds(lambda role: {"podSelector": {"matchLabels": {"role": role}}}, names),
                st.just({"ipBlock": {"cidr": "10.0.0.0/8"}}),
            ),
            max_size=3,
        ),
    },
)


def _keys_when_exposed(spec: dict[str, Any]) -> dict[str, Any]:
    """The schema requires API keys for a NodePort or LoadBalancer Service."""
    if spec.get("service", {}).get("type") in ("NodePort", "LoadBalancer") and "apiKeys" not in spec.get("access", {}):
        return {**spec, "access": {**spec.get("access", {}), "apiKeys": {"secretName": "keys"}}}
    return spec


specs = st.fixed_dictionaries(
    {
        "model": st.fixed_dictionaries(
            {"uri": uris},
            optional={
                "name": names,
                "format": st.sampled_from(["torchscript", "exported-program"]),
                "sha256": st.from_regex(r"[a-f0-9]{64}", fullmatch=True),
            },
        )
    },
    optional={
        "replicas": st.integers(0, 10000),
        "gpu": gpu,
        "runtime": runtime,
        "scheduling": scheduling,
        "service": st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]),
                "port": st.integers(1, 65535),
            },
        ),
        "podMetadata": st.fixed_dictionaries(
            {}, optional={"labels": st.dictionaries(st.sampled_from(["team", "tier"]), names, max_size=2)}
        ),
        "serviceAccountName": names,
        "progressDeadlineSeconds": st.integers(60, 86400),
        "access": access,
    },
).map(_keys_when_exposed)


_RESOURCES = {
    "ModelDeployment": ModelDeploymentResource,
    "Deployment": Deployment,
    "Service": Service,
    "NetworkPolicy": NetworkPolicy,
}


def _dry_run(client: Client, namespace: str, manifest: dict[str, Any]) -> None:
    """A server-side apply that stores nothing, over the same JSON API the operator uses."""
    try:
        client.patch(
            _RESOURCES[manifest["kind"]],
            manifest["metadata"]["name"],
            manifest,
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager="modeldeploy-operator",
            dry_run=True,
        )
    except ApiError as error:
        raise AssertionError(f"{manifest['kind']} refused: {error.status.message}\n{json.dumps(manifest)}") from error


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(spec=specs)
def test_any_valid_spec_gives_manifests_the_apiserver_accepts(cluster, crd_installed, namespace, spec) -> None:
    client = cluster.client()
    body = {
        "apiVersion": "serving.modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "prop"},
        "spec": spec,
    }
    _dry_run(client, namespace, body)
    md = ModelDeployment.from_body(
        {
            "metadata": {
                "name": "prop",
                "namespace": namespace,
                "uid": "0b8c1f0e-0000-4000-8000-000000000000",
                "generation": 1,
            },
            "spec": spec,
        }
    )
    _dry_run(client, namespace, build_deployment(md, BuildOptions(default_runtime_image="registry.local/runtime:1")))
    _dry_run(client, namespace, build_service(md))
    _dry_run(client, namespace, build_network_policy(md, "monitoring"))
