"""The ModelDeployment as the operator works with it: identity plus the validated spec, parsed once from a body.

The one place where a body can fail to be served: everything downstream (the builders in manifests/) takes this
frozen object and cannot fail.
"""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modeldeploy_operator.api.v1alpha1 import API_VERSION, KIND, ModelDeploymentSpec


class InvalidSpecError(ValueError):
    """The spec cannot be served as written; the message says which field and what is allowed."""


@dataclass(frozen=True)
class ModelDeployment:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: ModelDeploymentSpec

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "ModelDeployment":
        metadata = body["metadata"]
        try:
            spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            raise InvalidSpecError(_describe(error)) from error
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation") or 0),
            spec=spec,
        )

    @property
    def model_name(self) -> str:
        return self.spec.model.name or self.name

    def owner_reference(self) -> dict[str, Any]:
        """Makes this ModelDeployment the controller of a child: garbage collection deletes the child with it."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = "spec." + ".".join(str(part) for part in item["loc"])
        problems.append(f"{field}: {item['msg']}")
    return "; ".join(problems)
