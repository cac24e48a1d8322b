"""What this operator watches, how each object maps to its ModelDeployment, and what of it is kept."""

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import httpx2

from modeldeploy_operator.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from modeldeploy_operator.manifests.labels import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, TEMPLATE_HASH_ANNOTATION
from modeldeploy_operator.reconcile.drift import slim_managed_fields
from modeldeploy_operator.reconcile.reconciler import Children
from modeldeploy_operator.watch.informer import Informer, WatchedKind, run_all
from modeldeploy_operator.watch.store import Change, Key, object_key

OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference to the ModelDeployment that controls this child, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/") and ref.get("controller"):
            return ref
    return None


def _owner_by_reference(obj: dict[str, Any]) -> Key | None:
    ref = controller_ref(obj)
    return (object_key(obj)[0], ref["name"]) if ref is not None else None


def _owner_of_pod(obj: dict[str, Any]) -> Key | None:
    """Pods belong to a ReplicaSet: their ModelDeployment is named by the instance label."""
    instance = ((obj.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)
    return (object_key(obj)[0], instance) if instance else None


def _scaled_deployment(obj: dict[str, Any]) -> Key | None:
    """The Deployment an HPA scales; it has its ModelDeployment's name."""
    target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    if target.get("kind") == "Deployment" and str(target.get("apiVersion", "")).startswith("apps/"):
        return (object_key(obj)[0], target["name"])
    return None


def snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    """What the reconcile reads: of managedFields (often half of an object's bytes) only what our field manager
    owns, packed, from which drift is decided."""
    return slim_managed_fields(obj)


def _pod_snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    """Of a pod, only what the status is computed from: pods are the most numerous objects we watch."""
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    kept_status = ("conditions", "containerStatuses", "initContainerStatuses")
    kept_metadata = {k: metadata[k] for k in ("name", "deletionTimestamp") if k in metadata}
    version = (metadata.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION)
    if version is not None:
        kept_metadata["annotations"] = {TEMPLATE_HASH_ANNOTATION: version}
    return {"metadata": kept_metadata, "status": {k: status[k] for k in kept_status if k in status}}


MODELDEPLOYMENTS = WatchedKind(KIND, f"/apis/{GROUP}/{VERSION}", PLURAL, None, object_key, snapshot)
DEPLOYMENTS = WatchedKind("Deployment", "/apis/apps/v1", "deployments", OWNED_SELECTOR, _owner_by_reference, snapshot)
SERVICES = WatchedKind("Service", "/api/v1", "services", OWNED_SELECTOR, _owner_by_reference, snapshot)
NETWORK_POLICIES = WatchedKind(
    "NetworkPolicy", "/apis/networking.k8s.io/v1", "networkpolicies", OWNED_SELECTOR, _owner_by_reference, snapshot
)
PODS = WatchedKind("Pod", "/api/v1", "pods", OWNED_SELECTOR, _owner_of_pod, _pod_snapshot)
# Users create HPAs without our labels: unselected, and only the scale target's key is kept.
AUTOSCALERS = WatchedKind(
    "HorizontalPodAutoscaler", "/apis/autoscaling/v2", "horizontalpodautoscalers", None, _scaled_deployment,
    lambda _: {},
)  # fmt: skip
WATCHED = (MODELDEPLOYMENTS, DEPLOYMENTS, SERVICES, NETWORK_POLICIES, PODS, AUTOSCALERS)


class Caches:
    """The operator's caches, one informer per kind and scope (each namespace, or the whole cluster)."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        namespaces: Iterable[str],
        on_changes: Callable[[str, Iterable[Change]], None],
        server_timeout: int,
    ) -> None:
        scopes: list[str | None] = list(namespaces) or [None]
        self._informers = {
            watched.kind: {scope: Informer(http, watched, scope, on_changes, server_timeout) for scope in scopes}
            for watched in WATCHED
        }

    async def run(self) -> None:
        await run_all(informer for by_scope in self._informers.values() for informer in by_scope.values())

    async def wait_listed(self) -> None:
        for by_scope in self._informers.values():
            for informer in by_scope.values():
                await informer.listed.wait()

    async def relist(self, kind: str) -> None:
        for informer in self._informers[kind].values():
            await informer.relist()

    def modeldeployments(self) -> list[Key]:
        return [key for informer in self._informers[KIND].values() for key in informer.store.owners()]

    def modeldeployment(self, key: Key) -> dict[str, Any] | None:
        return next(iter(self._owned(KIND, key)), None)

    def deployments(self) -> Iterator[dict[str, Any]]:
        """Lazily: read once, to prime the upgrade waves."""
        return (
            deployment
            for informer in self._informers[DEPLOYMENTS.kind].values()
            for owner in informer.store.owners()
            for deployment in informer.store.owned_by(owner)
        )

    def children(self, key: Key) -> Children:
        def only(kind: str) -> dict[str, Any] | None:
            return next(iter(self._owned(kind, key)), None)

        return Children(
            deployment=only(DEPLOYMENTS.kind),
            service=only(SERVICES.kind),
            network_policy=only(NETWORK_POLICIES.kind),
            pods=self._owned(PODS.kind, key),
            deployment_autoscaled=bool(self._owned(AUTOSCALERS.kind, key)),
        )

    def _owned(self, kind: str, key: Key) -> list[dict[str, Any]]:
        by_scope = self._informers[kind]
        informer = by_scope.get(key[0]) or by_scope.get(None)
        return informer.store.owned_by(key) if informer is not None else []
