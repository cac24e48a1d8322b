"""The reconciler's I/O boundary (reconcile/cluster_api.py) in memory, for the reconciler's unit tests."""

import copy
from collections.abc import Mapping
from typing import Any

from apiserver_fields import as_applied
from modeldeploy_operator.kube import AlreadyExistsError
from modeldeploy_operator.reconcile.reconciler import Children


class FakeCluster:
    """The reconciler's I/O boundary (reconcile/cluster_api.py) in memory: an apiserver holding the children it
    was given or that were applied, answering as the real one would, and keeping every call."""

    def __init__(self, replicaset_templates: dict[str, dict[str, Any]] | None = None, owner_alive: bool = True) -> None:
        self.replicaset_templates = replicaset_templates or {}
        self.owner_alive = owner_alive  # what a live read of the ModelDeployment finds
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}  # by kind and name (one namespace)
        self.calls: list[tuple[str, Any]] = []
        self.failures: dict[str, Exception] = {}  # by kind: what applying it raises
        self.read_failure: Exception | None = None  # what reading any child raises
        self.version = 100

    def _next_version(self) -> str:
        self.version += 1
        return str(self.version)

    async def apply(self, manifest: dict[str, Any], *, only_if_absent: bool = False) -> dict[str, Any]:
        key = (manifest["kind"], manifest["metadata"]["name"])
        if only_if_absent and key in self.objects:
            self.calls.append(("already_exists", manifest["kind"]))
            raise AlreadyExistsError(f"HTTP 409: {manifest['kind']} {key[1]} exists")
        self.calls.append(("create" if only_if_absent else "apply", manifest))
        if manifest["kind"] in self.failures:
            raise self.failures[manifest["kind"]]
        applied = as_applied(manifest)
        applied["metadata"]["resourceVersion"] = self._next_version()
        self.objects[key] = applied
        return copy.deepcopy(applied)

    async def read_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("read_child", kind))
        if self.read_failure is not None:
            raise self.read_failure
        return copy.deepcopy(self.objects.get((kind, name)))

    async def is_current(self, body: dict[str, Any]) -> bool:
        self.calls.append(("is_current", body["metadata"]["uid"]))
        return self.owner_alive

    async def hand_over_replicas(self, namespace: str, name: str, replicas: int) -> bool:
        self.calls.append(("hand_over_replicas", replicas))
        return True

    async def replicaset_template(
        self, namespace: str, selector: Mapping[str, str | None], version: str
    ) -> dict[str, Any] | None:
        self.calls.append(("replicaset_template", version))
        return copy.deepcopy(self.replicaset_templates.get(version))

    async def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> str:
        self.calls.append(("write_status", status))
        return self._next_version()

    async def post_event(self, owner: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.calls.append(("post_event", (event_type, reason, message)))

    def made(self, kind: str) -> list[Any]:
        return [argument for call, argument in self.calls if call == kind]

    def applied(self, kind: str) -> list[dict[str, Any]]:
        """What was written of `kind`, by applies and by create-only applies."""
        return [manifest for call, manifest in self.calls if call in ("apply", "create") and manifest["kind"] == kind]

    def written_kinds(self) -> list[str]:
        return [manifest["kind"] for call, manifest in self.calls if call in ("apply", "create")]

    def events(self) -> list[str]:
        return [reason for _, reason, _ in self.made("post_event")]

    def children(self, name: str = "resnet", **overrides: Any) -> Children:
        """What the watches show of `name`'s children once they caught up with the apiserver."""
        shown = {
            "deployment": self.objects.get(("Deployment", name)),
            "service": self.objects.get(("Service", name)),
            "network_policy": self.objects.get(("NetworkPolicy", name)),
        }
        return Children(**{**copy.deepcopy(shown), **overrides})
