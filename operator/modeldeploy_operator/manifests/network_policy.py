"""The NetworkPolicy in front of a ModelDeployment's replicas: who may connect to the runtime at all.

Pods of the same namespace may, and the peers spec.access.allowedFrom lists; the metrics scraper's namespace
may, for /metrics. A NodePort or LoadBalancer Service brings clients from outside the cluster, whose addresses no
selector matches, so then any address may: the schema requires API keys for those types. The runtime serves its
metrics on its one HTTP port, so the scraper's rule opens that port; without a key it reaches only the open
routes (health, readiness, metrics).
"""

from typing import Any

from modeldeploy_operator.api.resource import ModelDeployment
from modeldeploy_operator.manifests.labels import child_metadata, selector_labels
from modeldeploy_operator.manifests.service import RUNTIME_PORT_NAME

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_EXPOSED_SERVICE_TYPES = ("NodePort", "LoadBalancer")


def build_network_policy(md: ModelDeployment, metrics_scraper_namespace: str) -> dict[str, Any]:
    port = [{"protocol": "TCP", "port": RUNTIME_PORT_NAME}]
    clients: dict[str, Any] = {"ports": port}
    if md.spec.service.type not in _EXPOSED_SERVICE_TYPES:
        clients["from"] = [
            {"podSelector": {}},
            *(peer.model_dump(by_alias=True, exclude_none=True) for peer in md.spec.access.allowed_from),
        ]
    ingress = [clients]
    if metrics_scraper_namespace:
        scraper = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: metrics_scraper_namespace}}}
        ingress.append({"from": [scraper], "ports": port})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(md),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(md.name)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
