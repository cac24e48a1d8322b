"""What the reconciler asks of the Kubernetes API, and nothing more.

kube.KubeApi implements it against the apiserver; the reconciler's unit tests inject an in-memory fake, so its
decisions (what to write, when not to, which error is permanent) are tested without a cluster. Implementations
raise kube.RejectedError for a request the apiserver refuses as invalid and kube.TransientError for one that
may succeed later.
"""

from collections.abc import Mapping
from typing import Any, Protocol


class ClusterApi(Protocol):
    async def apply(self, manifest: dict[str, Any], *, only_if_absent: bool = False) -> dict[str, Any]:
        """Server-side apply of a child with the operator's field manager; returns the object as applied.

        `only_if_absent`: only create it; raise kube.AlreadyExistsError, writing nothing, when its name is taken."""
        ...

    async def read_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The child object of this kind and name as the apiserver has it now, None when there is none."""
        ...

    async def is_current(self, body: dict[str, Any]) -> bool:
        """Whether the ModelDeployment still exists as this very object (same uid) and is not being deleted."""
        ...

    async def hand_over_replicas(self, namespace: str, name: str, replicas: int) -> bool:
        """Gives the Deployment's spec.replicas a second owner before an apply of ours leaves the field out."""
        ...

    async def replicaset_template(
        self, namespace: str, selector: Mapping[str, str | None], version: str
    ) -> dict[str, Any] | None:
        """The pod template of `version` from a ReplicaSet matching `selector`, if one still has it."""
        ...

    async def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> str:
        """Merge-patches the ModelDeployment's status; returns its new resourceVersion."""
        ...

    async def post_event(self, owner: dict[str, Any], event_type: str, reason: str, message: str) -> None: ...
