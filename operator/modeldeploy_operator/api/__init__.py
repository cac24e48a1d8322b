"""The ModelDeployment API: typed spec and status models, and the CRD rendered from them."""

from modeldeploy_operator.api.v1alpha1 import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    VERSION,
    ModelDeploymentSpec,
)

__all__ = ["GROUP", "KIND", "PLURAL", "SHORT_NAMES", "VERSION", "ModelDeploymentSpec"]
