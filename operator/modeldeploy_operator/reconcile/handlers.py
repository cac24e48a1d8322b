"""What triggers a reconcile, and the operator's start and stop under kopf: thin. Every trigger queues the one
reconcile, which reads the ModelDeployment and its children from the caches (watch/).

- A new ModelDeployment, or a new generation of one (a spec change), seen by the caches: queued as a spec change.
- At the start, every ModelDeployment, once all the caches have listed (so a restart does not take listed children
  for missing ones): an operator restart or a new leader catches up with what changed while none ran.
- Not kopf's create/update/resume handlers: they would watch the ModelDeployments a second time and patch each
  one's kopf bookkeeping annotation after every change (a write, and an event for every watcher), which nothing
  here needs: the reconcile is level-based (docs/benchmarks.md, issue 10).
- Changes of the children (Deployment, Service, NetworkPolicy, Pods) and of HPAs queue a reconcile of their owner:
  a deleted Service or an edited Deployment is restored at once, and the status follows the pods without any edit
  of the ModelDeployment.
- A resync lists the ModelDeployments again (dropping any the cache still holds but the apiserver does not) and
  queues every one every resync period: the backstop for a missed event or a write that failed, without the
  finalizer per object that kopf timers would add.
- A ModelDeployment waiting for its upgrade wave is queued as soon as a place in the wave frees.
- A transient failure is retried with backoff (reconcile/queue.py), a permanent one waits for the next spec change.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
import kopf

from modeldeploy_operator.api.v1alpha1 import KIND
from modeldeploy_operator.reconcile.queue import SPEC, Backoff, Key, ReconcileQueue
from modeldeploy_operator.reconcile.reconciler import Reconciler
from modeldeploy_operator.watch.owned import AUTOSCALERS, Caches, controller_ref
from modeldeploy_operator.watch.store import Change

logger = logging.getLogger(__name__)


class Watching:
    """The caches, the queue of reconciles they trigger, and the resync: started and stopped with kopf."""

    def __init__(
        self,
        reconciler: Reconciler,
        http_factory: Callable[[], httpx2.AsyncClient],
        namespaces: Iterable[str],
        server_timeout: int,
        workers: int,
        resync_period: float,
        retry_for: float,
    ) -> None:
        self._reconciler = reconciler
        self._http_factory = http_factory
        self._namespaces = list(namespaces)
        self._server_timeout = server_timeout
        self._resync_period = resync_period
        self.queue = ReconcileQueue(self._reconcile_owner, workers, Backoff(retry_for_s=retry_for))
        self._http: httpx2.AsyncClient | None = None
        self._caches: Caches | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def caches(self) -> Caches:
        if self._caches is None:
            raise RuntimeError("the caches start with the operator")
        return self._caches

    def start(self) -> None:
        self._http = self._http_factory()
        self._caches = Caches(self._http, self._namespaces, self.on_changes, self._server_timeout)
        tasks = (self._caches.run(), self._reconcile_once_listed(), self._resync(), self._wake_for_upgrade_waves())
        self._tasks = [asyncio.create_task(task) for task in tasks]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.aclose()

    def on_changes(self, kind: str, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.deleted is not None and kind == KIND:
                self._reconciler.forget(str(change.deleted["metadata"]["uid"]))
            elif change.deleted is not None and (ref := controller_ref(change.deleted)) is not None:
                self._reconciler.forget(str(ref["uid"]), kind)
            if kind == KIND:
                if change.deleted is None and self._spec_changed(change.owner):
                    self.queue.add(change.owner, SPEC)
            else:
                self.queue.add(change.owner, "autoscaler" if kind == AUTOSCALERS.kind else "child")

    def _spec_changed(self, key: Key) -> bool:
        """Whether the cached ModelDeployment is one, or a generation, not reconciled yet: its status writes (ours)
        and metadata edits (nothing is built from them) are not spec changes."""
        cached = self.caches.modeldeployment(key)
        if cached is None:
            return False
        metadata = cached["metadata"]
        return not self._reconciler.has_reconciled(metadata["uid"], int(metadata.get("generation") or 0))

    async def _reconcile_once_listed(self) -> None:
        """Nothing is reconciled before every cache has listed, so a restart does not take listed children for
        missing ones. Then, before the first decision, the upgrade waves count the rollouts of the operator's own
        template changes that a predecessor started, and every ModelDeployment is queued once: an operator restart
        or a new leader catches up with what changed while none ran."""
        await self.caches.wait_listed()
        self._reconciler.waves.prime(self.caches.deployments())
        for key in self.caches.modeldeployments():
            self.queue.add(key, "resume")
        await self.queue.run()

    async def _reconcile_owner(self, key: Key, trigger: str) -> None:
        owner = self.caches.modeldeployment(key)
        if owner is None or owner["metadata"].get("deletionTimestamp"):
            return  # not ours, or its owner is gone and garbage collection takes the child
        # A spec change was just seen in the ModelDeployment's own event: as sure an owner as a live read.
        owner_confirmed = trigger == SPEC
        await self._reconciler.reconcile(owner, self.caches.children(key), trigger, owner_confirmed)

    async def _wake_for_upgrade_waves(self) -> None:
        while True:
            self.queue.add(await self._reconciler.waves.next_woken(), "wave")

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self._resync_period)
            try:
                await self.caches.relist(KIND)
            except httpx2.HTTPError as error:
                logger.warning("resync could not list the ModelDeployments (%s): checking the cached ones", error)
            for key in self.caches.modeldeployments():
                self.queue.add(key, "resync")


def register(registry: kopf.OperatorRegistry, watching: Watching) -> None:
    @kopf.on.startup(registry=registry)
    async def start_watching(**_: Any) -> None:
        watching.start()

    @kopf.on.cleanup(registry=registry)
    async def stop_watching(**_: Any) -> None:
        await watching.stop()
