"""The parsed ModelDeployment the builders work from: identity plus the typed spec."""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modeldeploy_operator.api.v1alpha1 import API_VERSION, KIND, ModelDeploymentSpec
from modeldeploy_operator.manifests.labels import common_labels


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

    def child_metadata(self) -> dict[str, Any]:
        """Name, namespace, labels and owner of every child: named after its ModelDeployment, collected with it."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "labels": common_labels(self.name, self.model_name),
            "ownerReferences": [self.owner_reference()],
        }

    def owner_reference(self) -> dict[str, Any]:
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
