"""Pure builders: a parsed ModelDeployment in, the Kubernetes manifests it needs out.

The only place that decides what a child object looks like. No I/O, no clock, no randomness: the same spec
always gives the same manifests, so an operator restart or upgrade rolls no pods.
"""

from modeldeploy_operator.manifests.deployment import build_deployment
from modeldeploy_operator.manifests.network_policy import build_network_policy
from modeldeploy_operator.manifests.service import build_service, service_url

__all__ = ["build_deployment", "build_network_policy", "build_service", "service_url"]
