"""The batching engine on its own, in process, with a real torch function as the model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
import torch
from modeldeploy_runtime.batching import DynamicBatcher
from modeldeploy_runtime.batching.engine import RunBatch
from modeldeploy_runtime.errors import InferenceFailed, InvalidInput, Overloaded, RequestTimedOut


class Recorder:
    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.waits: list[float] = []

    def observe_batch(self, size: int, inference_s: float) -> None:
        self.batch_sizes.append(size)

    def observe_queue_wait(self, wait_s: float) -> None:
        self.waits.append(wait_s)


def affine(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    time.sleep(0.002)  # long enough for requests to pile up behind a running batch
    return [inputs[0] * 3 + 1, inputs[0].sum(dim=1)]


def engine(recorder: Recorder, run: RunBatch = affine, **overrides: object) -> DynamicBatcher:
    options: dict[str, object] = {
        "max_batch_size": 16, "max_delay_s": 0.005, "max_queue_size": 1000,
        "request_timeout_s": 10.0, "combine_requests": True,
    } | overrides  # fmt: skip
    return DynamicBatcher(run, observer=recorder, **options)  # type: ignore[arg-type]


async def submit(batcher: DynamicBatcher, rows: torch.Tensor) -> list[torch.Tensor]:
    async with batcher.admit() as slot:
        await asyncio.sleep(0)  # like reading a body: let other requests arrive
        return await slot.infer([rows])


async def test_each_request_gets_its_own_rows_and_batches_respect_the_limit() -> None:
    recorder = Recorder()
    batcher = engine(recorder)
    batcher.start()
    # Two shapes (width 3 and 5) must never share a batch; sizes 1..4 rows.
    requests = [torch.full((1 + index % 4, 3 + 2 * (index % 2)), float(index)) for index in range(300)]
    results = await asyncio.gather(*(submit(batcher, rows) for rows in requests))
    await batcher.stop()
    for rows, (scaled, total) in zip(requests, results, strict=True):
        assert torch.equal(scaled, rows * 3 + 1)
        assert torch.equal(total, rows.sum(dim=1))
    assert sum(recorder.batch_sizes) == sum(rows.shape[0] for rows in requests)
    assert max(recorder.batch_sizes) <= 16
    assert len(recorder.batch_sizes) < 100  # batched, not one call per request


async def test_a_lone_request_does_not_wait_for_the_batch_delay() -> None:
    recorder = Recorder()
    batcher = engine(recorder, max_delay_s=5.0)
    batcher.start()
    started = time.perf_counter()
    await submit(batcher, torch.ones(1, 3))
    elapsed = time.perf_counter() - started
    await batcher.stop()
    assert elapsed < 2.0, f"a lone request waited {elapsed:.2f}s for company that was never coming"


async def test_admission_beyond_the_queue_bound_is_refused() -> None:
    batcher = engine(Recorder(), max_queue_size=2)
    batcher.start()
    async with batcher.admit(), batcher.admit():
        with pytest.raises(Overloaded, match="queue is full"):
            async with batcher.admit():
                pass
    async with batcher.admit():  # room again once the others left
        pass
    await batcher.stop()


async def test_requests_time_out_while_the_model_is_stuck() -> None:
    release = threading.Event()

    def stuck(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        release.wait(10)
        return [inputs[0]]

    batcher = engine(Recorder(), stuck, max_delay_s=0.0, request_timeout_s=0.1)
    batcher.start()
    with pytest.raises(RequestTimedOut, match=r"within 0\.1s"):
        await submit(batcher, torch.ones(1, 2))
    release.set()
    await batcher.stop()


async def test_a_model_error_fails_its_request_and_the_engine_goes_on() -> None:
    calls = 0

    def flaky(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("shape mismatch deep inside the model, /srv/secret/path.py")
        return [inputs[0]]

    batcher = engine(Recorder(), flaky, max_delay_s=0.0)
    batcher.start()
    with pytest.raises(InferenceFailed, match="server log has the details") as failure:
        await submit(batcher, torch.ones(1, 2))
    assert "/srv" not in str(failure.value)
    assert torch.equal((await submit(batcher, torch.ones(1, 2)))[0], torch.ones(1, 2))
    await batcher.stop()


async def test_only_the_request_that_makes_the_model_raise_gets_the_error() -> None:
    """Co-batched requests are run again apart when their batch fails: the poisoned one alone fails."""
    rows_per_call: list[int] = []

    def refuses_negatives(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        rows_per_call.append(inputs[0].shape[0])
        time.sleep(0.002)
        if (inputs[0] < 0).any():
            raise InvalidInput("the model rejected the input: negative")
        return [inputs[0] * 2]

    batcher = engine(Recorder(), refuses_negatives, max_delay_s=0.05)
    batcher.start()
    requests = [torch.full((1, 2), -1.0 if index == 3 else float(index)) for index in range(8)]
    results = await asyncio.gather(*(submit(batcher, rows) for rows in requests), return_exceptions=True)
    await batcher.stop()
    assert isinstance(results[3], InvalidInput)
    for index, result in enumerate(results):
        if index != 3:
            assert not isinstance(result, BaseException), result
            assert torch.equal(result[0], requests[index] * 2)
    assert max(rows_per_call) > 1  # they were batched together first


async def test_a_hung_model_call_shows_in_longest_running() -> None:
    release = threading.Event()

    def hangs(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        release.wait(5)
        return [inputs[0]]

    batcher = engine(Recorder(), hangs, max_delay_s=0.0)
    batcher.start()
    assert batcher.longest_running_s() == 0.0
    pending = asyncio.ensure_future(submit(batcher, torch.ones(1, 2)))
    await asyncio.sleep(0.2)
    assert batcher.longest_running_s() >= 0.15
    release.set()
    await pending
    assert batcher.longest_running_s() == 0.0
    await batcher.stop()


async def test_outputs_without_the_batch_dimension_are_an_inference_error() -> None:
    batcher = engine(Recorder(), lambda inputs: [inputs[0].sum()], max_delay_s=0.05)
    batcher.start()
    results = await asyncio.gather(*(submit(batcher, torch.ones(1, 2)) for _ in range(4)), return_exceptions=True)
    await batcher.stop()
    # Batched: the outputs do not split back, and no request alone is to blame, so each batched one hears why.
    failures = [str(result) for result in results if isinstance(result, InferenceFailed)]
    assert failures and all("declare a fixed first dimension" in failure for failure in failures), results
    assert all(isinstance(result, InferenceFailed | list) for result in results), results


async def test_workers_run_batches_side_by_side() -> None:
    lock = threading.Lock()
    running = 0
    most = 0

    def tracked(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return [inputs[0] + 1]

    batcher = engine(Recorder(), tracked, max_batch_size=1, max_delay_s=0.0, workers=2)
    batcher.start()
    results = await asyncio.gather(*(submit(batcher, torch.full((1, 2), float(index))) for index in range(6)))
    await batcher.stop()
    assert [result[0][0, 0].item() for result in results] == [index + 1.0 for index in range(6)]
    assert most == 2
