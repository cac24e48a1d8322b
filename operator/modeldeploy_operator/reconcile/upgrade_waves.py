"""Operator upgrades roll the fleet in waves: a pod template change that comes from the operator (a new builder
version, a new default runtime image) and not from the ModelDeployment's spec rolls at most `size` ModelDeployments
at once; the others keep their running template, Progressing with reason WaitingForUpgradeWave, until those rolling
are Ready. A change of the spec is never held back.

Telling the two apart: the Deployment carries a fingerprint of the spec its pod template was built from (replicas
left out: they never shape the template). A different template from the same fingerprint can only come from the
operator. A Deployment written by an operator without fingerprints counts as built from the current spec when the
ModelDeployment's status says that operator had acted on the current generation.

Which ModelDeployments occupy the wave: those whose Deployment rolls a template change of the operator's and has not
finished (every replica updated and available), failing ones included, so that a new template that cannot become
Ready stops the upgrade at the first wave instead of spreading to the fleet. The Deployment says that its last
template change was the operator's (an annotation), so an operator restart forgets nothing: the count across the
fleet is primed from the watched Deployments before the first decision, then kept up to date by each reconcile.
"""

import asyncio
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from modeldeploy_operator.api.v1alpha1 import KIND, ModelDeploymentSpec
from modeldeploy_operator.manifests.content_hash import content_hash
from modeldeploy_operator.manifests.deployment import template_hash
from modeldeploy_operator.manifests.labels import (
    BUILT_FROM_ANNOTATION,
    ROLLED_BACK_ANNOTATION,
    TEMPLATE_CHANGED_BY_ANNOTATION,
)
from modeldeploy_operator.reconcile.workload import rollout_complete

Key = tuple[str, str]  # namespace, name


class TemplateChange(Enum):
    NONE = "none"  # the Deployment runs the template we build, or there is no Deployment yet
    SPEC = "spec"
    OPERATOR = "operator"


def spec_fingerprint(spec: ModelDeploymentSpec) -> str:
    """What the pod template is built from, in the spec: everything but the replica count."""
    return content_hash(spec.model_dump(mode="json", exclude={"replicas"}))


def template_change(
    live: Mapping[str, Any] | None, desired_version: str, fingerprint: str, generation: int, observed_generation: Any
) -> TemplateChange:
    """Where a difference between the live Deployment's pod template and the desired one comes from."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    if live is None or template_hash(live) == desired_version or ROLLED_BACK_ANNOTATION in annotations:
        return TemplateChange.NONE  # the rollback keeps its own template (reconcile/rollback.py)
    built_from = annotations.get(BUILT_FROM_ANNOTATION)
    same_spec = built_from == fingerprint if built_from is not None else observed_generation == generation
    return TemplateChange.OPERATOR if same_spec else TemplateChange.SPEC


def marked(
    deployment: dict[str, Any], fingerprint: str, change: TemplateChange, live: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The Deployment manifest with the spec fingerprint and who made its template's last change."""
    previous = (((live or {}).get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_CHANGED_BY_ANNOTATION)
    changed_by = change.value if change is not TemplateChange.NONE else previous or TemplateChange.SPEC.value
    metadata = deployment["metadata"]
    annotations = {
        **metadata.get("annotations", {}),
        BUILT_FROM_ANNOTATION: fingerprint,
        TEMPLATE_CHANGED_BY_ANNOTATION: changed_by,
    }
    return {**deployment, "metadata": {**metadata, "annotations": annotations}}


def rolls_operator_change(deployment: Mapping[str, Any] | None) -> bool:
    """The Deployment rolls out a template change of the operator's and has not finished."""
    if not deployment:
        return False
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    if annotations.get(TEMPLATE_CHANGED_BY_ANNOTATION) != TemplateChange.OPERATOR.value:
        return False
    return not rollout_complete(deployment, int((deployment.get("spec") or {}).get("replicas") or 0))


class UpgradeWaves:
    """The ModelDeployments rolling an operator change (by uid), and those waiting for a place, in arrival order.

    Single-threaded (the operator's event loop), so admitting is atomic. A waiting ModelDeployment is woken when a
    place frees; the periodic resync reconciles it too."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rolling: dict[str, Key] = {}
        self._waiting: dict[str, Key] = {}
        self._woken: asyncio.Queue[Key] = asyncio.Queue()
        self._primed = False

    def prime(self, deployments: Iterable[Mapping[str, Any] | None]) -> None:
        """Once, before the first decision: which of our Deployments roll an operator change already (an operator
        restarted during an upgrade), so that the first ModelDeployments reconciled do not take their places."""
        if self._primed:
            return
        self._primed = True
        for deployment in deployments:
            owner = _owner(deployment) if rolls_operator_change(deployment) else None
            if owner is not None:
                self._rolling[owner[0]] = owner[1]

    def admit(self, uid: str, key: Key) -> bool:
        """Whether the ModelDeployment may roll its operator change now; if not, it waits for a place."""
        if uid not in self._rolling and len(self._rolling) >= self.size:
            self._waiting[uid] = key
            return False
        self._rolling[uid] = key
        self._waiting.pop(uid, None)
        return True

    def observe(self, uid: str, key: Key, rolling: bool, waiting: bool) -> None:
        """What a reconcile saw and decided: the ModelDeployment's Deployment rolls an operator change, or not; it
        waits for a place, or not (any more: a spec change rolled, or the Deployment has the template already)."""
        if rolling:
            self._rolling[uid] = key
        else:
            self._rolling.pop(uid, None)
        if not waiting:
            self._waiting.pop(uid, None)
        self._wake_waiting()

    def forget(self, uid: str) -> None:
        self._waiting.pop(uid, None)
        self._rolling.pop(uid, None)
        self._wake_waiting()

    @property
    def rolling(self) -> int:
        return len(self._rolling)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def next_woken(self) -> Key:
        """The next waiting ModelDeployment to reconcile now that a place is free."""
        return await self._woken.get()

    def _wake_waiting(self) -> None:
        """Hands the first waiting ModelDeployments, one per free place, to be reconciled. A woken one leaves the
        queue; it comes back if another took the place first."""
        for uid in list(self._waiting)[: max(self.size - len(self._rolling), 0)]:
            self._woken.put_nowait(self._waiting.pop(uid))


def _owner(deployment: Mapping[str, Any] | None) -> tuple[str, Key] | None:
    """The uid and key of the ModelDeployment that controls the Deployment."""
    metadata = (deployment or {}).get("metadata") or {}
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return str(ref["uid"]), (str(metadata.get("namespace") or ""), str(ref["name"]))
    return None
