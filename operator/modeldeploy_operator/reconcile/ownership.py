"""Whether an existing object with a ModelDeployment's name is ours to apply over.

A server-side apply adopts whatever object has the name: it would add our owner reference (so garbage collection
deletes the object with the ModelDeployment) and rewrite the fields we set. So a child the caches do not show is
only created, never applied over (kube.KubeApi.apply's only_if_absent), and an object found with its name is ours
only when its controller owner reference carries this ModelDeployment's uid; anything else is a conflict, reported
and left untouched until a person renames or deletes it.
"""

from collections.abc import Mapping
from typing import Any

from modeldeploy_operator.api import ModelDeployment
from modeldeploy_operator.reconcile.workload import Failure

CHILD_CONFLICT = "ChildConflict"


class ChildConflictError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def child_conflict(kind: str, child: Mapping[str, Any], md: ModelDeployment) -> Failure | None:
    """Why `child`, the live `kind` named after `md`, must not be applied over; None when it is md's own."""
    controller = next((ref for ref in _owner_references(child) if ref.get("controller")), None)
    if controller is not None and controller.get("uid") == md.uid:
        return None
    if controller is None:
        whose = "no controller owner reference"
    else:
        whose = f"controlled by {controller.get('kind')} {controller.get('name')}, uid {controller.get('uid')}"
        if controller.get("kind") == "ModelDeployment" and controller.get("name") == md.name:
            whose += ": an earlier ModelDeployment of this name, which garbage collection is deleting"
    return Failure(
        CHILD_CONFLICT,
        f"{kind} {md.namespace}/{md.name} exists and was not created for this ModelDeployment ({whose}). "
        f"The operator leaves it untouched, so that it is not adopted and deleted with this ModelDeployment: delete "
        f"or rename that {kind}, or give this ModelDeployment another name.",
    )


def _owner_references(child: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((child.get("metadata") or {}).get("ownerReferences") or [])
