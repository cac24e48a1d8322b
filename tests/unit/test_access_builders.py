"""spec.access in the children: the Secrets mounted, the runtime's settings, HTTPS probes, the NetworkPolicy."""

from typing import Any

from modeldeploy_operator.api.v1alpha1 import OPERATOR_SET_RUNTIME_ENV
from modeldeploy_operator.manifests import build_deployment, build_network_policy, build_service, service_url
from modeldeploy_operator.manifests.deployment import RUNTIME_ENV_DEFAULTS, BuildOptions

OPTIONS = BuildOptions(default_runtime_image="registry.local/runtime:1")
SELECTOR = {"app.kubernetes.io/name": "modeldeploy-runtime", "app.kubernetes.io/instance": "resnet"}
FULL_ACCESS = {
    "apiKeys": {
        "secretName": "resnet-keys",
        "limits": {"requestsPerSecond": 2.5, "requestsBurst": 10, "tokensPerMinute": 6000, "tokensBurst": 1000},
    },
    "audit": {"enabled": True, "payloads": True},
    "tls": {"secretName": "resnet-tls"},
    "allowedFrom": [
        {"namespaceSelector": {"matchLabels": {"team": "b"}}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "gateway"}}},
    ],
}


def _runtime(spec: dict[str, Any], make_md) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return build_deployment(make_md(spec), OPTIONS)["spec"]["template"]["spec"]


def test_keys_limits_audit_and_tls_reach_the_runtime(make_md) -> None:
    spec = {
        "model": {"uri": "file:///m.pt"},
        "runtime": {"resources": {"limits": {"memory": "8Gi"}}},
        "access": FULL_ACCESS,
    }
    pod = _runtime(spec, make_md)
    runtime = pod["containers"][0]
    assert pod["volumes"][-2:] == [
        {"name": "api-keys", "secret": {"secretName": "resnet-keys"}},
        {"name": "tls", "secret": {"secretName": "resnet-tls"}},
    ]
    assert runtime["volumeMounts"][-2:] == [
        {"name": "api-keys", "mountPath": "/etc/modeldeploy/api-keys", "readOnly": True},
        {"name": "tls", "mountPath": "/etc/modeldeploy/tls", "readOnly": True},
    ]
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in runtime["env"]}
    assert {name: value for name, value in env.items() if "KEY" in name or "AUDIT" in name or "TLS" in name} == {
        "MODELDEPLOY_API_KEYS_DIR": "/etc/modeldeploy/api-keys",
        "MODELDEPLOY_KEY_REQUESTS_PER_SECOND": "2.5",
        "MODELDEPLOY_KEY_REQUESTS_BURST": "10",
        "MODELDEPLOY_KEY_TOKENS_PER_MINUTE": "6000",
        "MODELDEPLOY_KEY_TOKENS_BURST": "1000",
        "MODELDEPLOY_AUDIT": "true",
        "MODELDEPLOY_AUDIT_PAYLOADS": "true",
        "MODELDEPLOY_TLS_CERT_FILE": "/etc/modeldeploy/tls/tls.crt",
        "MODELDEPLOY_TLS_KEY_FILE": "/etc/modeldeploy/tls/tls.key",
    }
    assert env["MODELDEPLOY_MEMORY_LIMIT_BYTES"] == {
        "resourceFieldRef": {"containerName": "runtime", "resource": "limits.memory"}
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert runtime[probe]["httpGet"]["scheme"] == "HTTPS"
    assert set(env) <= {*OPERATOR_SET_RUNTIME_ENV, *RUNTIME_ENV_DEFAULTS}


def test_without_access_nothing_is_mounted_and_probes_stay_http(make_md) -> None:
    pod = _runtime({"model": {"uri": "file:///m.pt"}}, make_md)
    runtime = pod["containers"][0]
    assert [volume["name"] for volume in pod["volumes"]] == ["tmp"]
    assert not [item for item in runtime["env"] if "KEY" in item["name"] or "TLS" in item["name"]]
    assert "MODELDEPLOY_MEMORY_LIMIT_BYTES" not in {item["name"] for item in runtime["env"]}
    assert runtime["livenessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_tls_makes_the_service_and_url_https(make_md) -> None:
    md = make_md({"model": {"uri": "file:///m.pt"}, "service": {"port": 443}, "access": {"tls": {"secretName": "t"}}})
    assert build_service(md)["spec"]["ports"][0]["appProtocol"] == "https"
    assert service_url(md) == "https://resnet.team-a.svc.cluster.local"


def test_network_policy_admits_the_namespace_the_listed_peers_and_the_scraper(make_md) -> None:
    md = make_md({"model": {"uri": "file:///m.pt"}, "access": FULL_ACCESS})
    policy = build_network_policy(md, "monitoring")
    assert policy["metadata"] == build_service(md)["metadata"]  # named, labelled and owned like the others
    assert {key: value for key, value in policy.items() if key != "metadata"} == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "spec": {
            "podSelector": {"matchLabels": SELECTOR},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "ports": [{"protocol": "TCP", "port": "http"}],
                    "from": [
                        {"podSelector": {}},
                        {"namespaceSelector": {"matchLabels": {"team": "b"}}},
                        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "gateway"}}},
                    ],
                },
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                    "ports": [{"protocol": "TCP", "port": "http"}],
                },
            ],
        },
    }


def test_network_policy_of_an_exposed_service_admits_any_address(make_md) -> None:
    md = make_md(
        {
            "model": {"uri": "file:///m.pt"},
            "service": {"type": "LoadBalancer"},
            "access": {"apiKeys": {"secretName": "k"}},
        }
    )
    assert build_network_policy(md, "")["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]
