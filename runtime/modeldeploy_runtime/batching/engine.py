"""Dynamic batching in the style of Triton's batcher, in process.

Requests are admitted against a bound (`max_queue_size` counts requests that are admitted but not yet
running: being read and decoded, or waiting in the queue), so memory stays bounded and overload is refused
early, before a body is read. One collector task forms batches: while the model is busy, requests pile up
and the next batch takes up to `max_batch_size` items of one shape at once; when the model is idle it
waits at most `max_delay_s` for requests that are already admitted and on their way, and never for requests
that may not come (a lone client pays no batching delay). The model runs in `workers` threads of its own
(only calls too cheap to hand off run on the event loop), so the loop keeps serving while torch computes
(torch releases the GIL).

A batch of several requests that fails is run again one request at a time, so only the request that makes the
model raise gets the error, not every client it was batched with. A model call that runs longer than the
request timeout is reported by `longest_running_s`: liveness fails on it (a wedged GPU never returns).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import torch

from modeldeploy_runtime.errors import (
    ClientDisconnected,
    InferenceFailed,
    Overloaded,
    RequestTimedOut,
    ServingError,
)

_log = logging.getLogger(__name__)

# A model call predicted to take less than this runs on the event loop itself: handing it to the inference
# thread and back costs more (two thread wake-ups and GIL hand-offs, 50-100 us on a busy machine), and it
# blocks the loop no longer than parsing one request does.
INLINE_BUDGET_S = 0.0002
_COST_SMOOTHING = 0.2

RunBatch = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]
# Returns once the client has gone away (the HTTP layer waits for the connection's disconnect message).
WaitForDisconnect = Callable[[], Awaitable[object]]


class BatchObserver(Protocol):
    def observe_batch(self, size: int, inference_s: float) -> None: ...

    def observe_queue_wait(self, wait_s: float) -> None: ...


class _BatchDimensionMissing(InferenceFailed):
    """The model's outputs do not split back by request: a fault of the model, not of one request."""


@dataclass(eq=False)
class _Queued:
    inputs: Sequence[torch.Tensor]
    size: int
    signature: Hashable
    future: asyncio.Future[list[torch.Tensor]]
    enqueued_at: float = field(default_factory=time.perf_counter)

    def resolve(self, outputs: list[torch.Tensor]) -> None:
        if not self.future.done():
            self.future.set_result(outputs)

    def resolve_with_error(self, error: Exception) -> None:
        if self.future.done():
            return
        if not isinstance(error, ServingError):
            _log.error("model call failed", exc_info=error)
            error = InferenceFailed("the model failed on this request; the server log has the details")
        self.future.set_exception(error)


class Slot:
    """One admitted request's place in the engine; `infer` may be called once."""

    def __init__(self, batcher: DynamicBatcher, deadline: float) -> None:
        self._batcher = batcher
        self._deadline = deadline
        self.submitted = False

    async def infer(
        self, inputs: Sequence[torch.Tensor], wait_for_disconnect: WaitForDisconnect | None = None
    ) -> list[torch.Tensor]:
        """Runs `inputs` (batch dimension first, one shape per request) and returns this request's outputs.

        With `wait_for_disconnect`, a request that has to wait behind others is dropped from the queue if
        its client goes away, so abandoned requests never take model time.
        """
        self.submitted = True
        return await self._batcher._enqueue(inputs, self._deadline, wait_for_disconnect)


class DynamicBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue_size: int,
        request_timeout_s: float,
        combine_requests: bool,
        observer: BatchObserver,
        workers: int = 1,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self._max_queue_size = max_queue_size
        self._request_timeout_s = request_timeout_s
        self._combine = combine_requests
        self._observer = observer
        self._queue: collections.deque[_Queued] = collections.deque()
        self._arriving = 0
        self._awaiting = 0
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Thread-local settings (torch's intra-op thread count under OpenMP) go in through the initializer.
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="inference", initializer=thread_initializer
        )
        self._workers = workers
        # The collector forms a batch only when a worker is free: requests keep piling up meanwhile, so
        # batches fill under load instead of being cut early.
        self._free_workers = asyncio.Semaphore(workers)
        # Each running batch and when its model call started.
        self._running: dict[asyncio.Task[None], float] = {}
        self._collector: asyncio.Task[None] | None = None
        # Smoothed seconds per model call, by batch size rounded up to a power of two.
        self._call_cost: dict[int, float] = {}

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Admitted requests not yet answered: arriving, queued or running."""
        return self._arriving + self._awaiting

    def longest_running_s(self) -> float:
        """How long the oldest model call still running has been at it; 0 when none runs."""
        if not self._running:
            return 0.0
        return time.perf_counter() - min(self._running.values())

    def start(self) -> None:
        self._collector = asyncio.get_running_loop().create_task(self._collect_forever(), name="batcher")

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        if self._running:
            await asyncio.wait(list(self._running))
        for queued in self._queue:
            if not queued.future.done():
                queued.future.set_exception(Overloaded("server is shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=True)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def check_room(self) -> None:
        """Raises Overloaded when the queue is full: lets a caller refuse before doing any work."""
        if self._arriving + len(self._queue) >= self._max_queue_size:
            raise Overloaded(f"queue is full ({self._max_queue_size} requests waiting); retry after a short delay")

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[Slot]:
        """Reserves room for one request (decoded next, then queued) or raises Overloaded."""
        self.check_room()
        slot = Slot(self, time.perf_counter() + self._request_timeout_s)
        self._arriving += 1
        self._idle.clear()
        try:
            yield slot
        finally:
            if not slot.submitted:
                self._arriving -= 1
                self._mark_idle_if_done()

    async def _enqueue(
        self, inputs: Sequence[torch.Tensor], deadline: float, wait_for_disconnect: WaitForDisconnect | None
    ) -> list[torch.Tensor]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[torch.Tensor]] = loop.create_future()
        queued = _Queued(
            inputs=inputs,
            size=inputs[0].shape[0] if inputs[0].dim() else 1,
            signature=tuple((tensor.dtype, tuple(tensor.shape[1:])) for tensor in inputs),
            future=future,
        )
        self._arriving -= 1
        self._awaiting += 1
        # Only a request that will wait is worth a watcher task; an idle engine answers at once.
        will_wait = bool(self._queue) or len(self._running) >= self._workers
        self._queue.append(queued)
        self._work.set()
        timer = loop.call_later(max(deadline - queued.enqueued_at, 0.0), self._expire, future)
        watcher = None
        if wait_for_disconnect is not None and will_wait:
            watcher = loop.create_task(_abandon_on_disconnect(wait_for_disconnect, future))
        try:
            return await future
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()
            self._awaiting -= 1
            self._mark_idle_if_done()

    def _expire(self, future: asyncio.Future[list[torch.Tensor]]) -> None:
        if not future.done():
            future.set_exception(RequestTimedOut(f"request did not finish within {self._request_timeout_s:g}s"))

    def _mark_idle_if_done(self) -> None:
        if self.in_flight == 0:
            self._idle.set()

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._free_workers.acquire()
            if not self._queue:
                self._work.clear()
                await self._work.wait()
            batch = await self._collect_batch()
            if not batch:
                self._free_workers.release()
                continue
            task = loop.create_task(self._execute(batch))
            self._running[task] = time.perf_counter()
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._free_workers.release()

    async def _collect_batch(self) -> list[_Queued]:
        first = self._pop_live()
        if first is None:
            return []
        batch = [first]
        if not self._combine:
            return batch
        size = first.size
        deadline = first.enqueued_at + self._max_delay_s
        while True:
            size = self._take_compatible(batch, size, first.signature)
            remaining = deadline - time.perf_counter()
            if size >= self.max_batch_size or self._arriving == 0 or remaining <= 0:
                return batch
            self._work.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._work.wait(), remaining)

    def _pop_live(self) -> _Queued | None:
        while self._queue:
            queued = self._queue.popleft()
            if not queued.future.done():
                return queued
        return None

    def _take_compatible(self, batch: list[_Queued], size: int, signature: Hashable) -> int:
        """Moves queued requests of the same shape into `batch`, in arrival order, while they fit."""
        kept: collections.deque[_Queued] = collections.deque()
        while self._queue:
            queued = self._queue.popleft()
            if queued.future.done():
                continue
            if queued.signature == signature and size + queued.size <= self.max_batch_size:
                batch.append(queued)
                size += queued.size
            else:
                kept.append(queued)
        self._queue = kept
        return size

    async def _execute(self, batch: list[_Queued]) -> None:
        started = time.perf_counter()
        for queued in batch:
            self._observer.observe_queue_wait(started - queued.enqueued_at)
        size = sum(queued.size for queued in batch)
        size_class = 1 << max(size - 1, 0).bit_length()
        requests = [queued.inputs for queued in batch]
        try:
            cost = self._call_cost.get(size_class)
            if cost is not None and cost < INLINE_BUDGET_S:
                results, seconds = self._run_split(requests)
            else:
                results, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run_split, requests
                )
        except Exception as error:
            if len(batch) > 1 and not isinstance(error, _BatchDimensionMissing):
                await self._execute_apart(batch)
                return
            for queued in batch:  # one request, or a fault of the model that no request alone causes
                queued.resolve_with_error(error)
            return
        for queued, outputs in zip(batch, results, strict=True):
            queued.resolve(outputs)
        previous = self._call_cost.get(size_class, seconds)
        self._call_cost[size_class] = previous + _COST_SMOOTHING * (seconds - previous)
        self._observer.observe_batch(size, seconds)

    async def _execute_apart(self, batch: list[_Queued]) -> None:
        """Runs each request of a failed batch alone: the one that makes the model raise gets the error."""
        loop = asyncio.get_running_loop()
        for queued in batch:
            if queued.future.done():
                continue
            try:
                results, seconds = await loop.run_in_executor(self._executor, self._run_split, [queued.inputs])
            except Exception as error:
                queued.resolve_with_error(error)
                continue
            queued.resolve(results[0])
            self._observer.observe_batch(queued.size, seconds)

    def _run_split(self, requests: list[Sequence[torch.Tensor]]) -> tuple[list[list[torch.Tensor]], float]:
        """Stacks along dim 0, runs once, hands each request its own rows; also returns the seconds taken."""
        started = time.perf_counter()
        if len(requests) == 1:
            return [self._run_batch(requests[0])], time.perf_counter() - started
        sizes = [request[0].shape[0] for request in requests]
        stacked = [torch.cat(tensors) for tensors in zip(*requests, strict=True)]
        outputs = self._run_batch(stacked)
        total = sum(sizes)
        for index, output in enumerate(outputs):
            if output.dim() == 0 or output.shape[0] != total:
                raise _BatchDimensionMissing(
                    f"output {index} has shape {tuple(output.shape)}, but a batch of {total} needs the batch "
                    "first; declare a fixed first dimension in the model metadata to turn batching off"
                )
        per_output = [torch.split(output, sizes) for output in outputs]
        return [list(rows) for rows in zip(*per_output, strict=True)], time.perf_counter() - started


async def _abandon_on_disconnect(
    wait_for_disconnect: WaitForDisconnect, future: asyncio.Future[list[torch.Tensor]]
) -> None:
    await wait_for_disconnect()
    if not future.done():
        future.set_exception(ClientDisconnected("client closed the connection before the answer"))
