"""Every reconcile, queued: a spec change, a child's event, a re-list, the resync, a place freed in an upgrade wave.

One reconcile per ModelDeployment at a time; triggers that arrive meanwhile fold into one more run after it (a
spec change, which trusts the owner it reads, takes the place of a waiting trigger that does not). A transient
failure is retried with a growing delay for a bounded time instead of waiting for the next event or the resync;
after that the resync is the backstop. A permanent one is not retried: the next spec change runs it again.

Two lanes. A child's change (a Deployment now Ready, a pod crash-looping, an HPA's scale) mostly needs a status
write or nothing, and waits in a lane of its own, served first; everything else (a spec change, the start, the
resync, a retry, a wave) in the other, which still gets one key in every CHILD_CHANGES_IN_A_ROW + 1 while it
waits. In one first-in, first-out line, a burst of new ModelDeployments kept the status of those already serving
from saying Ready for minutes; the two lanes served in turn still lagged by a minute, as each of a child's changes
waited for a start, the slow kind (docs/benchmarks.md, "Each object's time, step by step").
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import kopf

from modeldeploy_operator import metrics

logger = logging.getLogger(__name__)

Key = tuple[str, str]
SPEC = "spec"  # the trigger of a new ModelDeployment or a new generation of one
CHILD_CHANGES = frozenset({"child", "autoscaler"})  # the triggers of the lane of children's changes
CHILD_CHANGES_IN_A_ROW = 8


@dataclass(frozen=True)
class Backoff:
    delays: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
    retry_for_s: float = 600

    def delay(self, retry: int, failing_for_s: float) -> float | None:
        """Seconds before retry number `retry` (1-based), or None once it has failed for `retry_for_s`."""
        if failing_for_s >= self.retry_for_s:
            return None
        return self.delays[min(retry, len(self.delays)) - 1]


class _Lanes:
    """Keys in two first-in, first-out lanes: children's changes first, but no more than CHILD_CHANGES_IN_A_ROW
    of them while another key waits."""

    def __init__(self) -> None:
        self._starts: deque[Key] = deque()
        self._child_changes: deque[Key] = deque()
        self._keys = asyncio.Semaphore(0)  # released once for every key in either lane
        self._child_changes_in_a_row = 0

    def put(self, key: Key, child_change: bool) -> None:
        (self._child_changes if child_change else self._starts).append(key)
        self._keys.release()

    async def get(self) -> Key:
        await self._keys.acquire()
        if self._child_changes and (not self._starts or self._child_changes_in_a_row < CHILD_CHANGES_IN_A_ROW):
            self._child_changes_in_a_row += 1
            return self._child_changes.popleft()
        self._child_changes_in_a_row = 0
        return self._starts.popleft()


class ReconcileQueue:
    def __init__(
        self, reconcile: Callable[[Key, str], Awaitable[None]], workers: int, backoff: Backoff = Backoff()
    ) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._backoff = backoff
        self._lanes = _Lanes()
        self._waiting: dict[Key, str] = {}  # queued or to run again after the current run: key -> trigger
        self._running: set[Key] = set()
        self._retries: dict[Key, tuple[int, float]] = {}  # key -> (retries so far, monotonic time of the first failure)

    def add(self, key: Key, trigger: str) -> None:
        if key in self._waiting:
            if trigger == SPEC:
                self._waiting[key] = trigger
            return
        self._waiting[key] = trigger
        if key not in self._running:
            self._put(key)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._running)

    async def run(self) -> None:
        await asyncio.gather(*(self._work() for _ in range(self._workers)))

    async def _work(self) -> None:
        while True:
            key = await self._lanes.get()
            trigger = self._waiting.pop(key)
            self._running.add(key)
            try:
                await self._reconcile(key, trigger)
                self._retries.pop(key, None)
            except kopf.PermanentError as error:
                self._retries.pop(key, None)
                logger.warning("reconcile of %s/%s (%s) failed: %s", *key, trigger, error)
            except kopf.TemporaryError as error:
                self._retry_later(key, trigger, error)
            except Exception as error:  # a bug of ours: said loudly, then retried the same bounded way
                logger.exception("reconcile of %s/%s (%s) failed", *key, trigger)
                self._retry_later(key, trigger, error)
            finally:
                self._running.discard(key)
                if key in self._waiting:
                    self._put(key)

    def _put(self, key: Key) -> None:
        self._lanes.put(key, child_change=self._waiting[key] in CHILD_CHANGES)

    def _retry_later(self, key: Key, trigger: str, error: Exception) -> None:
        now = time.monotonic()
        retries, failing_since = self._retries.get(key, (0, now))
        retry = retries + 1
        delay = self._backoff.delay(retry, now - failing_since)
        if delay is None:
            self._retries.pop(key, None)
            metrics.REQUEUES.labels("given_up").inc()
            logger.warning("reconcile of %s/%s (%s) failed %d times, left to the resync: %s", *key, trigger,
                           retry, error)  # fmt: skip
            return
        self._retries[key] = (retry, failing_since)
        metrics.REQUEUES.labels("retried").inc()
        logger.warning("reconcile of %s/%s (%s) failed, again in %ss: %s", *key, trigger, delay, error)
        asyncio.get_running_loop().call_later(delay, self.add, key, "retry")
