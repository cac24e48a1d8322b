"""All Kubernetes API writes of the operator: server-side apply of children and ModelDeployment status.

Reads come from kopf's watches and indexes, never from here, so the steady state costs no requests.
"""

from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from modeldeploy_operator.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from modeldeploy_operator.manifests.labels import FIELD_MANAGER

ModelDeploymentResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
_CHILD_RESOURCES = {"Deployment": Deployment, "Service": Service}


class RejectedError(Exception):
    """The apiserver refused the object as invalid: retrying cannot help until the spec changes."""


class TransientError(Exception):
    """The apiserver could not be reached or asked us to come back later."""


class KubeApi:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with our one field manager; force takes back only fields we set ourselves."""
        resource = _CHILD_RESOURCES[manifest["kind"]]
        metadata = manifest["metadata"]
        applied = await self._call(
            self._client.patch(
                resource,
                metadata["name"],
                manifest,
                namespace=metadata["namespace"],
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=True,
            )
        )
        return applied.to_dict()

    async def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._call(
            self._client.patch(
                ModelDeploymentResource.Status,
                name,
                {"status": status},
                namespace=namespace,
                patch_type=PatchType.MERGE,
                field_manager=FIELD_MANAGER,
            )
        )

    @staticmethod
    async def _call(request: Any) -> Any:
        try:
            return await request
        except ApiError as error:
            code, message = error.status.code, error.status.message or str(error)
            if code in (400, 422):
                raise RejectedError(message) from error
            raise TransientError(f"HTTP {code}: {message}") from error
        except httpx2.HTTPError as error:
            raise TransientError(f"{type(error).__name__}: {error}") from error
