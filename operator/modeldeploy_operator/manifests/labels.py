"""Names and labels shared by every child object."""

from typing import Any

from modeldeploy_operator.api.resource import ModelDeployment
from modeldeploy_operator.api.v1alpha1 import GROUP

MANAGED_BY = "modeldeploy-operator"
FIELD_MANAGER = "modeldeploy-operator"
# Holds a Deployment's replicas between our last apply with them and the HPA's first scale (kube.py).
REPLICAS_HANDOVER_FIELD_MANAGER = "modeldeploy-handover-to-hpa"

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MODEL_LABEL = f"{GROUP}/model"

RUNTIME_APP_NAME = "modeldeploy-runtime"
# The applied manifest's own hash (drift.stamp): a spec change shows as a different value.
SPEC_HASH_ANNOTATION = f"{GROUP}/spec-hash"
# On the pod template, so on every pod: which version of the template a pod runs (the rollout and the rollback
# tell the spec's version from older ones by it).
TEMPLATE_HASH_ANNOTATION = f"{GROUP}/template-hash"
# On the Deployment while it is held on an older template after an automatic rollback (reconcile/rollback.py).
ROLLED_BACK_ANNOTATION = f"{GROUP}/rolled-back"
# On the Deployment: the fingerprint of the spec its pod template was built from, and whether the template's last
# change came from the spec or from the operator (reconcile/upgrade_waves.py).
BUILT_FROM_ANNOTATION = f"{GROUP}/built-from-spec"
TEMPLATE_CHANGED_BY_ANNOTATION = f"{GROUP}/template-changed-by"


def selector_labels(instance: str) -> dict[str, str]:
    """The immutable Deployment selector and the Service selector: never add to this."""
    return {NAME_LABEL: RUNTIME_APP_NAME, INSTANCE_LABEL: instance}


def common_labels(instance: str, model_name: str) -> dict[str, str]:
    return {
        **selector_labels(instance),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "modeldeploy",
        MANAGED_BY_LABEL: MANAGED_BY,
        MODEL_LABEL: model_name,
    }


def selector_string(instance: str) -> str:
    return ",".join(f"{key}={value}" for key, value in selector_labels(instance).items())


def child_metadata(md: ModelDeployment) -> dict[str, Any]:
    """Name, namespace, labels and owner of every child: named after its ModelDeployment, collected with it."""
    return {
        "name": md.name,
        "namespace": md.namespace,
        "labels": common_labels(md.name, md.model_name),
        "ownerReferences": [md.owner_reference()],
    }
