"""Reconciles triggered outside a ModelDeployment's own handler (a child's event, a re-list, the resync), queued.

One reconcile per ModelDeployment at a time; triggers that arrive meanwhile fold into one more run after it. A
transient failure is retried with a growing delay, a bounded number of times, instead of waiting for the next
event or the resync; after the last try the resync is the backstop.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import kopf

from modeldeploy_operator import metrics

logger = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True)
class Backoff:
    delays: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
    max_retries: int = 8

    def delay(self, retry: int) -> float | None:
        """Seconds before retry number `retry` (1-based), or None when the retries are spent."""
        if retry > self.max_retries:
            return None
        return self.delays[min(retry, len(self.delays)) - 1]


class ReconcileQueue:
    def __init__(
        self, reconcile: Callable[[Key, str], Awaitable[None]], workers: int, backoff: Backoff = Backoff()
    ) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._backoff = backoff
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._waiting: dict[Key, str] = {}  # queued or to run again after the current run: key -> trigger
        self._running: set[Key] = set()
        self._retries: dict[Key, int] = {}

    def add(self, key: Key, trigger: str) -> None:
        if key in self._waiting:
            return
        self._waiting[key] = trigger
        if key not in self._running:
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._running)

    async def run(self) -> None:
        await asyncio.gather(*(self._work() for _ in range(self._workers)))

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
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
                    self._queue.put_nowait(key)

    def _retry_later(self, key: Key, trigger: str, error: Exception) -> None:
        retry = self._retries.get(key, 0) + 1
        delay = self._backoff.delay(retry)
        if delay is None:
            self._retries.pop(key, None)
            metrics.REQUEUES.labels("given_up").inc()
            logger.warning("reconcile of %s/%s (%s) failed %d times, left to the resync: %s", *key, trigger,
                           retry, error)  # fmt: skip
            return
        self._retries[key] = retry
        metrics.REQUEUES.labels("retried").inc()
        logger.warning("reconcile of %s/%s (%s) failed, again in %ss: %s", *key, trigger, delay, error)
        asyncio.get_running_loop().call_later(delay, self.add, key, "retry")
