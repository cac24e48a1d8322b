"""Automatic rollback to the last pod template that became Ready, and the history of templates. Pure: no I/O.

Each pod template the spec asks for is a version, named by its hash (the template-hash annotation every pod
carries). status.revisions keeps the last versions and their outcome: RollingOut, then Succeeded once every
replica ran it Ready, or Failed. When the version the spec asks for fails before it ever succeeded, and an earlier
version did, the Deployment goes back to that earlier template (read from the ReplicaSet that ran it) and carries
an annotation saying which version failed and why. The spec stays as the user wrote it.

No rollback loop: while the spec asks for the failed template, the Deployment stays where it was put back. A spec
that asks for another template (any change to the pods) is rolled out as usual; so is the same template once
automatic rollback is turned off. What survives an operator restart: status.revisions (the target) and the
Deployment's annotation (the rollback in force, written by the same apply that rolls back).
"""

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from modeldeploy_operator.api.v1alpha1 import MAX_REVISIONS
from modeldeploy_operator.manifests.deployment import template_hash
from modeldeploy_operator.manifests.labels import ROLLED_BACK_ANNOTATION
from modeldeploy_operator.reconcile.workload import (
    HEALS_BY_ITSELF,
    Failure,
    deployment_failure,
    live_pods,
    most_telling,
    pod_failures,
)

# The Deployment controller's label on ReplicaSets and their pods: never ours to apply.
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class Version:
    """A pod template the spec asks for."""

    generation: int
    template_hash: str
    model_uri: str


@dataclass(frozen=True)
class Rollback:
    """The Deployment was put back from a failed version on the last one that succeeded."""

    failed_version: str
    failed_generation: int
    reason: str
    message: str
    to_version: str
    to_generation: int

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def on(cls, deployment: Mapping[str, Any] | None) -> "Rollback | None":
        """The rollback a Deployment carries, if any."""
        annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
        try:
            return cls(**json.loads(annotations[ROLLED_BACK_ANNOTATION]))
        except (KeyError, TypeError, ValueError):
            return None  # none, or not ours to understand: the spec's template is applied over it

    def describe(self) -> str:
        failure = self.message if self.message.startswith(self.reason) else f"{self.reason}: {self.message}"
        return (
            f"generation {self.failed_generation} failed ({failure}); rolled back to the pod template of "
            f"generation {self.to_generation}, which serves meanwhile. Change the spec to try again."
        )


def rollback_in_force(deployment: Mapping[str, Any] | None, version: str) -> Rollback | None:
    """The rollback that still holds: the spec asks for the very template that failed."""
    rollback = Rollback.on(deployment)
    return rollback if rollback is not None and rollback.failed_version == version else None


def decide_rollback(
    version: Version,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    revisions: Sequence[Mapping[str, Any]],
) -> Rollback | None:
    """A rollback to start now: the Deployment runs the spec's version, which fails before it ever succeeded,
    and an earlier version succeeded. A failure that can heal by itself (no node yet) is waited out."""
    if deployment is None or template_hash(deployment) != version.template_hash:
        return None  # the spec's template is not applied yet: nothing of it can have failed
    newest = revisions[-1] if revisions else None
    if newest and newest.get("templateHash") == version.template_hash and newest.get("outcome") == "Succeeded":
        return None  # it proved itself: a later failure is an incident, not a bad version
    target = last_good(revisions, version.template_hash)
    if target is None:
        return None
    failure = version_failure(deployment, pods, version.template_hash)
    if failure is None or failure.reason in HEALS_BY_ITSELF:
        return None
    return Rollback(
        failed_version=version.template_hash,
        failed_generation=version.generation,
        reason=failure.reason,
        message=failure.message,
        to_version=str(target["templateHash"]),
        to_generation=int(target["generation"]),
    )


def version_failure(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], version: str) -> Failure | None:
    """What keeps `version`, the Deployment's current template, from rolling out."""
    # The controller's conditions count once it has seen the template: until then they speak of the previous one.
    seen = (deployment.get("status") or {}).get("observedGeneration") == (deployment.get("metadata") or {}).get(
        "generation"
    )
    failure = deployment_failure(deployment) if seen else None
    return failure or most_telling(pod_failures(live_pods(pods, version)))


def last_good(revisions: Sequence[Mapping[str, Any]], version: str) -> Mapping[str, Any] | None:
    """The newest revision, other than `version`, that succeeded."""
    return next(
        (r for r in reversed(revisions) if r.get("outcome") == "Succeeded" and r.get("templateHash") != version),
        None,
    )


def held_deployment(desired: dict[str, Any], template: Mapping[str, Any], rollback: Rollback) -> dict[str, Any]:
    """The Deployment the spec asks for (replicas, strategy, ...), but on the template it was rolled back to."""
    held = on_template(desired, template)
    annotations = {**desired["metadata"].get("annotations", {}), ROLLED_BACK_ANNOTATION: rollback.to_annotation()}
    return {**held, "metadata": {**desired["metadata"], "annotations": annotations}}


def on_template(desired: dict[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment the spec asks for, on a pod template a Deployment or ReplicaSet ran, less what the apiserver
    and the Deployment controller added to it."""
    kept = copy.deepcopy(dict(template))
    metadata = kept.setdefault("metadata", {})
    metadata.pop("creationTimestamp", None)
    (metadata.get("labels") or {}).pop(POD_TEMPLATE_HASH_LABEL, None)
    return {**desired, "spec": {**desired["spec"], "template": kept}}


def record_revision(
    revisions: Sequence[Mapping[str, Any]],
    version: Version,
    outcome: tuple[str, str | None] | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The history with `version` as its newest entry and `outcome` ((outcome, reason), if one was reached)."""
    history = [dict(revision) for revision in revisions]
    timestamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not history or history[-1].get("templateHash") != version.template_hash:
        if history and history[-1].get("outcome") == "RollingOut":
            history[-1] = {**history[-1], "outcome": "Superseded", "time": timestamp}
        history.append(
            {
                "generation": version.generation,
                "templateHash": version.template_hash,
                "modelUri": version.model_uri,
                "outcome": "RollingOut",
                "time": timestamp,
            }
        )
    newest = history[-1]
    if outcome is not None and (newest.get("outcome"), newest.get("reason")) != outcome:
        result, reason = outcome
        newest = {key: value for key, value in newest.items() if key != "reason"}
        history[-1] = {**newest, "outcome": result, "time": timestamp, **({"reason": reason} if reason else {})}
    return _trim(history)


def _trim(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest MAX_REVISIONS entries, keeping the rollback target even when it is older."""
    if len(history) <= MAX_REVISIONS:
        return history
    kept = history[-MAX_REVISIONS:]
    target = last_good(history, history[-1]["templateHash"])
    if target is not None and target not in kept:
        kept = [dict(target), *history[-(MAX_REVISIONS - 1) :]]
    return kept
