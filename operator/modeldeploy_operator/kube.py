"""All Kubernetes API writes of the operator: server-side apply of children, ModelDeployment status, events.

Reads come from the operator's caches (watch/), so the steady state costs no requests. The reads here are an
automatic rollback's (the pod template of the ReplicaSet that last ran Ready, once per rollback), the read of the
object that holds a child's name when the child's create finds it taken (ours, or someone else's?), and the check
that an owner is alive before one of its children is re-created by a reconcile that a spec change did not trigger.
Requests are bounded in flight: a thousand ModelDeployments created at once must queue here, not exhaust the
connection pool and time out at the apiserver.
"""

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import Event, Service
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from modeldeploy_operator.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from modeldeploy_operator.manifests.deployment import template_hash
from modeldeploy_operator.manifests.labels import FIELD_MANAGER, REPLICAS_HANDOVER_FIELD_MANAGER
from modeldeploy_operator.reconcile.drift import slim_managed_fields

ModelDeploymentResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
_CHILD_RESOURCES: dict[str, Any] = {"Deployment": Deployment, "Service": Service, "NetworkPolicy": NetworkPolicy}
REQUEST_TIMEOUT_SECONDS = 30.0
# No child ever has it: etcd's revision 1 is one of the apiserver's own bootstrap writes, and a resourceVersion is the
# revision of an object's last write.
CREATE_ONLY_VERSION = "1"


class RejectedError(Exception):
    """The apiserver refused the object as invalid: retrying cannot help until the spec changes."""


class TransientError(Exception):
    """The apiserver could not be reached or asked us to come back later."""


class ConflictError(TransientError):
    """HTTP 409: another writer got there first (a newer resourceVersion, or a field it owns)."""


class AlreadyExistsError(ConflictError):
    """A create-only apply found an object with the name: ours that the caches do not show yet, or another's."""


class NotFoundError(TransientError):
    """HTTP 404: the object is gone (or not yet visible); what was asked of it may succeed once it is back."""


class KubeApi:
    def __init__(self, client_factory: Callable[[], AsyncClient], max_writes_in_flight: int) -> None:
        # The client binds to the event loop it first runs in (kopf's), so it is made on first use.
        self._client_factory = client_factory
        self._client: AsyncClient | None = None
        self._writes = asyncio.Semaphore(max_writes_in_flight)

    async def apply(self, manifest: dict[str, Any], *, only_if_absent: bool = False) -> dict[str, Any]:
        """Server-side apply with our one field manager; force takes back only fields we set ourselves.

        `only_if_absent`: create the object, or raise AlreadyExistsError when any object has its name, in one
        request. The apply carries a resourceVersion that no object has, a precondition the apiserver checks only
        against an object that exists (Java Operator SDK creates this way). A create (POST) would do the same but
        leave our fields to an Update entry of our manager, which later applies could not remove.

        Returns the applied object with only our manager's fields of its managedFields, packed (drift is decided
        from them): the reconciler keeps the object until the watch shows it."""
        if only_if_absent:
            manifest = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": CREATE_ONLY_VERSION}}
        try:
            applied = await self._server_side_apply(manifest, FIELD_MANAGER, force=True)
        except ConflictError as error:
            if only_if_absent:  # forced, an apply meets no field conflict: the precondition failed
                raise AlreadyExistsError(str(error)) from error
            raise
        return slim_managed_fields(dict(applied.to_dict()))

    async def read_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The child as the apiserver has it now, without managedFields; None when there is none."""

        async def get(client: AsyncClient) -> dict[str, Any] | None:
            try:
                found: Any = await client.get(_CHILD_RESOURCES[kind], name, namespace=namespace)
            except ApiError as error:
                if error.status.code == 404:
                    return None
                raise
            found.metadata.managedFields = None
            return dict(found.to_dict())

        result: dict[str, Any] | None = await self._request(get)
        return result

    async def hand_over_replicas(self, namespace: str, name: str, replicas: int) -> bool:
        """Gives a Deployment's spec.replicas a second owner at its current value, before an apply of ours leaves
        the field out. Otherwise the apiserver removes a field its only applier dropped, and the Deployment falls
        back to 1 replica until the HPA scales it up again (Kubernetes' documented transfer of ownership).

        Returns False when another manager already owns the field at another value (the HPA scaled it): that
        owner keeps the value, and there is nothing to hand over."""
        holder = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        try:
            await self._server_side_apply(holder, REPLICAS_HANDOVER_FIELD_MANAGER, force=False)
        except ConflictError:
            return False
        return True

    async def replicaset_template(
        self, namespace: str, selector: Mapping[str, str | None], version: str
    ) -> dict[str, Any] | None:
        """The pod template of version `version` from the ReplicaSets matching `selector`, if one still has it."""

        async def find(client: AsyncClient) -> dict[str, Any] | None:
            async for replicaset in client.list(ReplicaSet, namespace=namespace, labels=dict(selector)):
                found = replicaset.to_dict()
                if template_hash(found) == version:
                    return dict(found["spec"]["template"])
            return None

        result: dict[str, Any] | None = await self._request(find)
        return result

    async def is_current(self, body: dict[str, Any]) -> bool:
        """Whether this ModelDeployment still exists as this very object (same uid) and is not being deleted,
        read live: a cache can still hold an owner that a bulk delete has just removed."""
        metadata = body["metadata"]
        try:
            live = await self._request(
                lambda client: client.get(ModelDeploymentResource, metadata["name"], namespace=metadata["namespace"])
            )
        except NotFoundError:
            return False
        return bool(live.metadata.uid == metadata["uid"] and live.metadata.deletionTimestamp is None)

    async def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> str:
        """Merge-patches the status; returns the object's new resourceVersion."""
        written = await self._request(
            lambda client: client.patch(
                ModelDeploymentResource.Status,
                name,
                {"status": status},
                namespace=namespace,
                patch_type=PatchType.MERGE,
                field_manager=FIELD_MANAGER,
            )
        )
        return str(written.metadata.resourceVersion)

    async def post_event(self, owner: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        metadata = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request(lambda client: client.create(Event.from_dict(event)))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _server_side_apply(self, manifest: dict[str, Any], field_manager: str, *, force: bool) -> Any:
        metadata = manifest["metadata"]
        return await self._request(
            lambda client: client.patch(
                _CHILD_RESOURCES[manifest["kind"]],
                metadata["name"],
                manifest,
                namespace=metadata["namespace"],
                patch_type=PatchType.APPLY,
                field_manager=field_manager,
                force=force,
            )
        )

    async def _request(self, request: Callable[[AsyncClient], Any]) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        async with self._writes:
            try:
                return await request(self._client)
            except ApiError as error:
                code, message = error.status.code, error.status.message or str(error)
                if code in (400, 422):
                    raise RejectedError(message) from error
                if code == 409:
                    raise ConflictError(f"HTTP 409: {message}") from error
                if code == 404:
                    raise NotFoundError(f"HTTP 404: {message}") from error
                raise TransientError(f"HTTP {code}: {message}") from error
            except httpx2.HTTPError as error:
                raise TransientError(f"{type(error).__name__}: {error}") from error


def default_client() -> AsyncClient:
    """In-cluster credentials or $KUBECONFIG, our field manager, a timeout that tolerates a busy apiserver."""
    return AsyncClient(
        config=KubeConfig.from_env(), field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(REQUEST_TIMEOUT_SECONDS)
    )
