"""The Service in front of a ModelDeployment's replicas."""

from typing import Any

from modeldeploy_operator.api.resource import ModelDeployment
from modeldeploy_operator.manifests.labels import child_metadata, selector_labels

RUNTIME_PORT_NAME = "http"


def build_service(md: ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(md),
        "spec": {
            "type": md.spec.service.type,
            "selector": selector_labels(md.name),
            "ports": [
                {
                    "name": RUNTIME_PORT_NAME,
                    "port": md.spec.service.port,
                    "targetPort": RUNTIME_PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "https" if md.spec.access.tls else "http",
                }
            ],
        },
    }


def service_url(md: ModelDeployment) -> str:
    port = md.spec.service.port
    host = f"{md.name}.{md.namespace}.svc.cluster.local"
    scheme, default_port = ("https", 443) if md.spec.access.tls else ("http", 80)
    return f"{scheme}://{host}" if port == default_port else f"{scheme}://{host}:{port}"
