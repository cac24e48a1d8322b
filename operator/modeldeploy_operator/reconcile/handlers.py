"""kopf handlers: thin. They read from the watches' indexes, call the one reconcile, and report.

- The ModelDeployment's create/update/resume handlers reconcile with retries and backoff.
- Events of the children (Deployment, Service, NetworkPolicy, Pods) reconcile their owner: a deleted Service or
  an edited Deployment is restored at once, and the status follows the pods without any edit of the
  ModelDeployment.
- A resync re-checks every ModelDeployment from the indexes every resync period: the backstop for a missed
  event or a write that failed, without the finalizer per object that kopf timers would add.
"""

import asyncio
import contextlib
import copy
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from modeldeploy_operator.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from modeldeploy_operator.manifests.labels import (
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TEMPLATE_HASH_ANNOTATION,
)
from modeldeploy_operator.reconcile.reconciler import Children, Reconciler

logger = logging.getLogger(__name__)

Key = tuple[str, str]
INDEXES = (
    "modeldeployments",
    "owned_deployments",
    "owned_services",
    "owned_network_policies",
    "owned_pods",
    "autoscaled_deployments",
)
OWNED = {MANAGED_BY_LABEL: MANAGED_BY}
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# The child kinds we label: watched through the OWNED_SELECTOR label selector on the apiserver (app.py).
OWNED_CHILDREN = (("apps", "v1", "deployments"), ("v1", "services"), ("networking.k8s.io", "v1", "networkpolicies"),
                  ("v1", "pods"))  # fmt: skip
# For errors kopf does not classify; ours carry their own delay (TemporaryError) or stop (PermanentError).
RETRY_BACKOFF_SECONDS = 10


def _controller_ref(body: kopf.Body) -> Mapping[str, Any] | None:
    """The owner reference to the ModelDeployment that controls this child, if any."""
    for ref in body.metadata.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/") and ref.get("controller"):
            return ref
    return None


def _owner_key(namespace: str | None, body: kopf.Body) -> Key | None:
    """The ModelDeployment a child belongs to: its controller owner reference, else (pods) its instance label."""
    ref = _controller_ref(body)
    if ref is not None:
        return (namespace or "", ref["name"])
    if body.get("kind") == "Pod" and INSTANCE_LABEL in body.metadata.labels:
        return (namespace or "", body.metadata.labels[INSTANCE_LABEL])
    return None


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    """A copy of what the reconcile reads, without managedFields: often half of an object's bytes, never read,
    and the indexes hold one copy per watched object."""
    snapshot = copy.deepcopy(dict(body))
    snapshot["metadata"] = {k: v for k, v in snapshot.get("metadata", {}).items() if k != "managedFields"}
    return snapshot


def _pod_snapshot(body: kopf.Body) -> dict[str, Any]:
    """Of a pod, only what the status is computed from: pods are the most numerous objects we watch."""
    metadata, status = body.get("metadata", {}), body.get("status", {})
    kept_status = ("conditions", "containerStatuses", "initContainerStatuses")
    kept_metadata = {k: metadata[k] for k in ("name", "deletionTimestamp") if k in metadata}
    version = (metadata.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION)
    if version is not None:
        kept_metadata["annotations"] = {TEMPLATE_HASH_ANNOTATION: version}
    return copy.deepcopy({"metadata": kept_metadata, "status": {k: status[k] for k in kept_status if k in status}})


def _only(store: Any) -> dict[str, Any] | None:
    return next(iter(store), None) if store is not None else None


def _scaled_deployment(namespace: str | None, hpa_spec: Mapping[str, Any]) -> Key | None:
    """The Deployment an HPA scales; it has its ModelDeployment's name."""
    target = hpa_spec.get("scaleTargetRef") or {}
    if target.get("kind") == "Deployment" and str(target.get("apiVersion", "")).startswith("apps/"):
        return (namespace or "", target["name"])
    return None


async def _reconcile_from_indexes(
    reconciler: Reconciler, key: Key | None, indexes: Mapping[str, Any], trigger: str
) -> None:
    """Reconciles ModelDeployment `key`, if it exists, outside its own handler (after another object's event, or
    at the resync): nothing retries it, the next event or resync re-checks."""
    owner = _only(indexes["modeldeployments"].get(key)) if key else None
    if key is None or owner is None or owner["metadata"].get("deletionTimestamp"):
        return  # not ours, or its owner is gone and garbage collection takes the child
    try:
        await reconciler.reconcile(owner, children_of(key, indexes), trigger=trigger)
    except (kopf.PermanentError, kopf.TemporaryError) as error:
        # The module's logger, not kopf's: kopf's would post every such warning as an Event on the object.
        logger.warning("reconcile of %s/%s (%s) failed: %s", *key, trigger, error)


def children_of(key: Key, indexes: Mapping[str, Any]) -> Children:
    return Children(
        deployment=_only(indexes["owned_deployments"].get(key)),
        service=_only(indexes["owned_services"].get(key)),
        network_policy=_only(indexes["owned_network_policies"].get(key)),
        pods=list(indexes["owned_pods"].get(key) or []),
        deployment_autoscaled=key in indexes["autoscaled_deployments"],
    )


def register(
    registry: kopf.OperatorRegistry, reconciler: Reconciler, handler_timeout: float, resync_period: float
) -> None:
    @kopf.index(GROUP, VERSION, PLURAL, registry=registry, id="modeldeployments")
    def modeldeployments(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
        return {(namespace or "", name): _snapshot(body)}

    @kopf.index("apps", "v1", "deployments", labels=OWNED, registry=registry, id="owned_deployments")
    def owned_deployments(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
        key = _owner_key(namespace, body)
        return {key: _snapshot(body)} if key else None

    @kopf.index("v1", "services", labels=OWNED, registry=registry, id="owned_services")
    def owned_services(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
        key = _owner_key(namespace, body)
        return {key: _snapshot(body)} if key else None

    @kopf.index("networking.k8s.io", "v1", "networkpolicies", labels=OWNED, registry=registry,
                id="owned_network_policies")  # fmt: skip
    def owned_network_policies(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
        key = _owner_key(namespace, body)
        return {key: _snapshot(body)} if key else None

    @kopf.index("v1", "pods", labels=OWNED, registry=registry, id="owned_pods")
    def owned_pods(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]] | None:
        key = _owner_key(namespace, body)
        return {key: _pod_snapshot(body)} if key else None

    @kopf.index("autoscaling", "v2", "horizontalpodautoscalers", registry=registry, id="autoscaled_deployments")
    def autoscaled_deployments(*, namespace: str | None, spec: kopf.Spec, **_: Any) -> dict[Key, bool] | None:
        key = _scaled_deployment(namespace, spec)
        return {key: True} if key else None

    bounds: dict[str, Any] = {"registry": registry, "timeout": handler_timeout, "backoff": RETRY_BACKOFF_SECONDS}

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", **bounds)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", **bounds)
    @kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile", **bounds)
    async def reconcile_modeldeployment(*, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any) -> None:
        key = (namespace or "", name)
        await reconciler.reconcile(_snapshot(body), children_of(key, kwargs), trigger="spec")

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="forget_deleted")
    def forget_deleted(*, type: str, uid: str, **_: Any) -> None:
        if type == "DELETED":
            reconciler.forget(uid)

    @kopf.on.event("apps", "v1", "deployments", labels=OWNED, registry=registry, id="deployment_changed")
    @kopf.on.event("v1", "services", labels=OWNED, registry=registry, id="service_changed")
    @kopf.on.event(
        "networking.k8s.io", "v1", "networkpolicies", labels=OWNED, registry=registry, id="network_policy_changed"
    )
    @kopf.on.event("v1", "pods", labels=OWNED, registry=registry, id="pod_changed")
    async def child_changed(*, type: str, namespace: str | None, body: kopf.Body, **kwargs: Any) -> None:
        ref = _controller_ref(body)
        if type == "DELETED" and ref is not None:
            reconciler.forget(str(ref["uid"]), body.get("kind"))
        await _reconcile_from_indexes(reconciler, _owner_key(namespace, body), kwargs, trigger="child")

    # An HPA that comes or goes takes or gives back the Deployment's replicas: act on it now, not at the resync.
    @kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", registry=registry, id="autoscaler_changed")
    async def autoscaler_changed(*, namespace: str | None, spec: kopf.Spec, **kwargs: Any) -> None:
        await _reconcile_from_indexes(reconciler, _scaled_deployment(namespace, spec), kwargs, trigger="autoscaler")

    @kopf.on.startup(registry=registry)
    async def start_resync(*, memo: kopf.Memo, **kwargs: Any) -> None:
        # Startup handlers get the (still empty) index objects; the resync reads them as they fill.
        indexes = {name: kwargs[name] for name in INDEXES}
        memo["resync"] = asyncio.create_task(resync_forever(reconciler, indexes, resync_period))

    @kopf.on.cleanup(registry=registry)
    async def stop_resync(*, memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("resync")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def resync_forever(reconciler: Reconciler, indexes: Mapping[str, Any], period: float) -> None:
    while True:
        await asyncio.sleep(period)
        for key in list(indexes["modeldeployments"].keys()):
            try:
                await _reconcile_from_indexes(reconciler, key, indexes, trigger="resync")
            except Exception:  # one broken object must not stop the backstop for all the others
                logger.exception("resync of %s/%s failed", *key)
