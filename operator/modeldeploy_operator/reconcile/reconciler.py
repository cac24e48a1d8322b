"""One reconcile for every trigger: a spec change, a child's event, the periodic resync, an operator restart.

Parse the ModelDeployment, build the desired children, apply those that drifted, compute the status and
write it when it changed. Everything is read from the operator's caches, so nothing is written at steady state.
"""

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from modeldeploy_operator import metrics
from modeldeploy_operator.api import InvalidSpecError, ModelDeployment
from modeldeploy_operator.kube import AlreadyExistsError, RejectedError, TransientError
from modeldeploy_operator.manifests import (
    build_deployment,
    build_network_policy,
    build_service,
    service_url,
)
from modeldeploy_operator.manifests.deployment import BuildOptions, template_hash
from modeldeploy_operator.manifests.labels import selector_labels, selector_string
from modeldeploy_operator.reconcile.cluster_api import ClusterApi
from modeldeploy_operator.reconcile.drift import needs_apply, stamp
from modeldeploy_operator.reconcile.own_writes import OwnWrites
from modeldeploy_operator.reconcile.ownership import ChildConflictError, child_conflict
from modeldeploy_operator.reconcile.rollback import (
    Rollback,
    Version,
    decide_rollback,
    held_deployment,
    on_template,
    rollback_in_force,
)
from modeldeploy_operator.reconcile.rollout import replace_in_place
from modeldeploy_operator.reconcile.status import Observed, compute_status, transition_events
from modeldeploy_operator.reconcile.upgrade_waves import (
    TemplateChange,
    UpgradeWaves,
    marked,
    rolls_operator_change,
    spec_fingerprint,
    template_change,
)
from modeldeploy_operator.reconcile.workload import Failure

logger = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 10
# A conflicting object is not watched (it is not ours), so nothing tells us when a person removes it: look again.
CONFLICT_RECHECK_SECONDS = 30
STATUS = "status"  # the OwnWrites kind under which our last status write is kept


@dataclass(frozen=True)
class Children:
    """What the watches last saw of a ModelDeployment's children."""

    deployment: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    network_policy: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    deployment_autoscaled: bool = False  # an HPA targets the Deployment directly


@dataclass(frozen=True)
class DeploymentPlan:
    """The Deployment to apply, and why it looks the way it does."""

    manifest: dict[str, Any]
    version: Version  # the pod template the spec asks for (the manifest may hold an older one)
    rollback: Rollback | None = None  # in force: the manifest holds the last good template
    rollback_blocked: str | None = None  # a rollback was due but cannot happen, and why
    replacing_in_place: bool = False
    waiting_for_upgrade_wave: bool = False  # the manifest keeps the running template (reconcile/upgrade_waves.py)
    # Waiting, and the spec asks nothing of the Deployment the running one does not do: no write while it waits.
    leave_live: bool = False


class Reconciler:
    def __init__(
        self, api: ClusterApi, default_runtime_image: str, metrics_scraper_namespace: str, upgrade_wave_size: int
    ) -> None:
        self._api = api
        self._default_runtime_image = default_runtime_image
        self._metrics_scraper_namespace = metrics_scraper_namespace
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._own_writes = OwnWrites()
        self.waves = UpgradeWaves(upgrade_wave_size)
        # The newest generation reconciled per ModelDeployment: the caches' copy can lag the handler's body.
        self._generations: dict[str, int] = {}

    def forget(self, uid: str, kind: str | None = None) -> None:
        """The watch saw the ModelDeployment (kind None) or one of its children deleted."""
        self._own_writes.forget(uid, kind)
        if kind is None:
            self._locks.pop(uid, None)
            self.waves.forget(uid)
            self._generations.pop(uid, None)

    def has_reconciled(self, uid: str, generation: int) -> bool:
        """Whether this generation of the ModelDeployment (or a newer one) has been reconciled, or is being."""
        return generation <= self._generations.get(uid, -1)

    async def reconcile(
        self, body: dict[str, Any], children: Children, trigger: str, owner_confirmed: bool = False
    ) -> None:
        """Raises kopf.PermanentError for a spec that cannot be served, kopf.TemporaryError for what will heal.

        `owner_confirmed`: the body comes from the ModelDeployment's own event (a spec change). Otherwise it may
        be a cached owner that was deleted since, and a missing child is re-created only once a live read
        confirms the owner: never a child with an owner reference to a dead uid."""
        started = time.monotonic()
        result = "error"
        uid, generation = body["metadata"]["uid"], int(body["metadata"].get("generation") or 0)
        async with self._locks[uid]:
            if generation < self._generations.get(uid, 0):
                # Applying it would roll the children back to an older spec until the cache catches up.
                raise kopf.TemporaryError(f"generation {generation} is older than one already reconciled", delay=1)
            self._generations[uid] = generation
            try:
                await self._reconcile(body, children, owner_confirmed)
                result = "ok"
            finally:
                metrics.RECONCILES.labels(trigger, result).inc()
                metrics.RECONCILE_SECONDS.labels(trigger).observe(time.monotonic() - started)

    async def _reconcile(self, body: dict[str, Any], children: Children, owner_confirmed: bool) -> None:
        uid = body["metadata"]["uid"]
        try:
            md = ModelDeployment.from_body(body)
        except InvalidSpecError as error:
            await self._report_unservable(body, children, Failure("InvalidSpec", str(error)))
            raise kopf.PermanentError(f"invalid spec: {error}") from error

        options = BuildOptions(self._default_runtime_image, children.deployment_autoscaled)
        live = {
            "Deployment": self._own_writes.freshest(uid, "Deployment", children.deployment),
            "Service": self._own_writes.freshest(uid, "Service", children.service),
            "NetworkPolicy": self._own_writes.freshest(uid, "NetworkPolicy", children.network_policy),
        }
        desired_replicas = md.spec.replicas
        if children.deployment_autoscaled and live["Deployment"]:
            desired_replicas = int((live["Deployment"].get("spec") or {}).get("replicas") or 0)
        kind = "Deployment"
        try:
            plan = await self._plan_deployment(body, md, options, desired_replicas, live["Deployment"], children.pods)
            # The Deployment last, as Helm installs: a Service or NetworkPolicy of someone else's with the name is
            # found before pods start for a model that could not be reached.
            built = (build_service(md), build_network_policy(md, self._metrics_scraper_namespace), plan.manifest)
            desired = [stamp(manifest) for manifest in built]
            if not owner_confirmed and None in live.values() and not await self._api.is_current(body):
                logger.info("%s/%s is gone: its missing children are not re-created", md.namespace, md.name)
                return
            _check_shown_children(md, live)
            for manifest in desired:
                kind = manifest["kind"]
                reason = needs_apply(manifest, live[kind])
                if reason is None or (reason == "changed" and kind == "Deployment" and plan.leave_live):
                    continue
                if kind == "Deployment" and options.replicas_owned_by_autoscaler:
                    await self._hand_over_replicas(md, live[kind])
                applied = await self._apply(md, manifest, live[kind])
                self._own_writes.remember(uid, kind, applied)
                live[kind] = applied
                metrics.APPLIES.labels(kind, reason).inc()
                logger.info("applied %s %s/%s (%s)", kind, md.namespace, md.name, reason)
                if reason == "drifted" or (reason == "missing" and body.get("status")):
                    await self._event(body, "Normal", "DriftCorrected", f"restored {kind} {md.name} ({reason})")
        except ChildConflictError as error:
            await self._report_unservable(body, children, error.failure)  # its Degraded event names the object
            raise kopf.TemporaryError(str(error), delay=CONFLICT_RECHECK_SECONDS) from error
        except RejectedError as error:
            kept = "; the previous spec keeps serving" if children.deployment else ""
            failure = Failure("ApplyFailed", f"the apiserver rejected the {kind} built from this spec: {error}{kept}")
            await self._report_unservable(body, children, failure)
            raise kopf.PermanentError(failure.message) from error
        except TransientError as error:
            metrics.ERRORS.labels("transient").inc()
            raise kopf.TemporaryError(f"applying {kind}: {error}", delay=RETRY_DELAY_SECONDS) from error
        rolling = rolls_operator_change(live["Deployment"])
        self.waves.observe(uid, (md.namespace, md.name), rolling, waiting=plan.waiting_for_upgrade_wave)
        metrics.UPGRADE_WAVE.labels("rolling").set(self.waves.rolling)
        metrics.UPGRADE_WAVE.labels("waiting").set(self.waves.waiting)

        observed = Observed(
            generation=md.generation,
            desired_replicas=desired_replicas,
            url=service_url(md),
            selector=selector_string(md.name),
            model_name=md.model_name,
            children_current=True,
            deployment=live["Deployment"],
            pods=children.pods,
            version=plan.version,
            allowed_unavailable=md.spec.rollout.allowed_unavailable(desired_replicas),
            gpu_resource=md.spec.gpu.resource_name if md.spec.gpu.count > 0 else None,
            rollback=plan.rollback,
            rollback_blocked=plan.rollback_blocked,
            replacing_in_place=plan.replacing_in_place,
            waiting_for_upgrade_wave=plan.waiting_for_upgrade_wave,
        )
        await self._write_status(body, observed)

    async def _plan_deployment(
        self,
        body: dict[str, Any],
        md: ModelDeployment,
        options: BuildOptions,
        desired_replicas: int,
        live: dict[str, Any] | None,
        pods: list[dict[str, Any]],
    ) -> DeploymentPlan:
        """The Deployment to apply: the spec's, replacing in place when no GPU is free for a surge replica, held on
        the running pod template while an operator change waits for its upgrade wave, and held on the last good
        pod template while the spec asks for one that failed."""
        in_place = replace_in_place(md.spec, desired_replicas, live, pods)
        deployment = build_deployment(md, replace(options, replace_in_place=in_place))
        version = Version(md.generation, str(template_hash(deployment)), md.spec.model.uri)
        fingerprint = spec_fingerprint(md.spec)
        observed_generation = (self._current_status(body).get("status") or {}).get("observedGeneration")
        change = template_change(live, version.template_hash, fingerprint, md.generation, observed_generation)
        if live and change is TemplateChange.OPERATOR and not self.waves.admit(md.uid, (md.namespace, md.name)):
            held = marked(on_template(deployment, live["spec"]["template"]), fingerprint, TemplateChange.NONE, live)
            running = Version(md.generation, str(template_hash(live)), md.spec.model.uri)
            rescaled = "replicas" in held["spec"] and live["spec"].get("replicas") != held["spec"]["replicas"]
            return DeploymentPlan(held, running, waiting_for_upgrade_wave=True, leave_live=not rescaled)
        plan = DeploymentPlan(marked(deployment, fingerprint, change, live), version, replacing_in_place=in_place)
        if not md.spec.rollout.auto_rollback:
            return plan
        rollback = rollback_in_force(live, plan.version.template_hash)
        starting = rollback is None
        if rollback is None:
            revisions = (self._current_status(body).get("status") or {}).get("revisions") or []
            rollback = decide_rollback(plan.version, live, pods, revisions)
        if rollback is None:
            return plan
        if template_hash(live) == rollback.to_version:
            template: dict[str, Any] | None = (live or {})["spec"]["template"]
        else:
            template = await self._api.replicaset_template(md.namespace, selector_labels(md.name), rollback.to_version)
        if template is None:
            blocked = f"cannot roll back to generation {rollback.to_generation}: no ReplicaSet keeps its pod template"
            return replace(plan, rollback_blocked=blocked)
        if starting:
            logger.info("%s/%s: %s", md.namespace, md.name, rollback.describe())
            metrics.ROLLBACKS.labels(rollback.reason).inc()
        return replace(plan, manifest=held_deployment(deployment, template, rollback), rollback=rollback)

    async def _apply(
        self, md: ModelDeployment, manifest: dict[str, Any], live: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Applies over a child the caches show, and only creates one they do not: the caches index children by
        their owner reference, so an object of someone else's with the name is invisible to them, and an apply
        would adopt it. The create is refused, writing nothing, when the name is taken; the object is then read
        once, to tell ours that the caches do not show yet from someone else's (reconcile/ownership.py)."""
        if live is not None:
            return await self._api.apply(manifest)
        kind = manifest["kind"]
        try:
            return await self._api.apply(manifest, only_if_absent=True)
        except AlreadyExistsError:
            found = await self._api.read_child(kind, md.namespace, md.name)
        if found is None:
            raise TransientError(f"{kind} {md.namespace}/{md.name} was there a moment ago and is gone: trying again")
        conflict = child_conflict(kind, found, md)
        if conflict is not None:
            raise ChildConflictError(conflict)
        return await self._api.apply(manifest)

    async def _hand_over_replicas(self, md: ModelDeployment, deployment: dict[str, Any] | None) -> None:
        replicas = ((deployment or {}).get("spec") or {}).get("replicas")
        if replicas is not None and await self._api.hand_over_replicas(md.namespace, md.name, int(replicas)):
            logger.info("kept Deployment %s/%s at %s replicas for its HPA", md.namespace, md.name, replicas)

    async def _report_unservable(self, body: dict[str, Any], children: Children, failure: Failure) -> None:
        metrics.ERRORS.labels(failure.reason).inc()
        metadata, spec = body["metadata"], body.get("spec") or {}
        name = metadata["name"]
        observed = Observed(
            generation=int(metadata.get("generation") or 0),
            desired_replicas=int(spec.get("replicas") or 0),
            url="",
            selector=selector_string(name),
            model_name=(spec.get("model") or {}).get("name") or name,
            children_current=False,
            deployment=children.deployment,
            pods=children.pods,
            spec_error=failure,
        )
        await self._write_status(body, observed)

    def _current_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ModelDeployment with the freshest status: ours, until the watch shows it."""
        return self._own_writes.freshest(body["metadata"]["uid"], STATUS, body) or body

    async def _write_status(self, body: dict[str, Any], observed: Observed) -> None:
        metadata = body["metadata"]
        previous = self._current_status(body).get("status") or {}
        status = compute_status(observed, previous, datetime.now(UTC))
        # The apiserver stores a merge patch's nulls as absent keys: compare what it will store.
        stored = {key: value for key, value in status.items() if value is not None}
        if stored == previous:
            return
        try:
            version = await self._api.write_status(metadata["namespace"], metadata["name"], status)
        except TransientError as error:
            raise kopf.TemporaryError(f"writing status: {error}", delay=RETRY_DELAY_SECONDS) from error
        except RejectedError as error:
            # A status our own schema refuses is a bug of ours, not the user's: say so loudly, do not retry.
            logger.error(
                "status of %s/%s rejected by the apiserver: %s", metadata["namespace"], metadata["name"], error
            )
            raise kopf.PermanentError(f"status rejected: {error}") from error
        self._own_writes.remember(metadata["uid"], STATUS, {"metadata": {"resourceVersion": version}, "status": stored})
        metrics.STATUS_WRITES.inc()
        for event_type, reason, message in transition_events(previous, status):
            await self._event(body, event_type, reason, message)
        if _became_ready_first_time(previous, status, metadata):
            created = datetime.fromisoformat(metadata["creationTimestamp"].replace("Z", "+00:00"))
            metrics.TIME_TO_READY.observe((datetime.now(UTC) - created).total_seconds())

    async def _event(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        try:
            await self._api.post_event(body, event_type, reason, message)
        except (TransientError, RejectedError) as error:
            # An event is a courtesy: losing one must not fail or repeat the reconcile that caused it.
            logger.warning("event %s for %s not posted: %s", reason, body["metadata"]["name"], error)


def _became_ready_first_time(previous: dict[str, Any], status: dict[str, Any], metadata: dict[str, Any]) -> bool:
    def ready(s: dict[str, Any]) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or [])

    return ready(status) and not ready(previous) and int(metadata.get("generation") or 0) == 1


def _check_shown_children(md: ModelDeployment, live: dict[str, dict[str, Any] | None]) -> None:
    """Raises ChildConflictError for a child the caches show that another controls: they index children by their
    owner's name, so an earlier ModelDeployment's of the same name shows until garbage collection deletes it."""
    for kind, child in live.items():
        conflict = child_conflict(kind, child, md) if child is not None else None
        if conflict is not None:
            raise ChildConflictError(conflict)
