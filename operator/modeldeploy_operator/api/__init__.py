"""The ModelDeployment API: typed spec and status models, the CRD rendered from them, and the one parse of a
body into the validated resource."""

from modeldeploy_operator.api.resource import InvalidSpecError, ModelDeployment
from modeldeploy_operator.api.v1alpha1 import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    VERSION,
    ModelDeploymentSpec,
)

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "VERSION",
    "InvalidSpecError",
    "ModelDeployment",
    "ModelDeploymentSpec",
]
