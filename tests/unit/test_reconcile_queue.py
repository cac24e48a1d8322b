"""The queue of reconciles: folded triggers, a spec change first, retries bounded in time, children's changes first."""

import asyncio
import contextlib

import kopf
from modeldeploy_operator.reconcile.queue import CHILD_CHANGES_IN_A_ROW, SPEC, Backoff, Key, ReconcileQueue


def test_backoff_grows_to_its_cap_and_ends_after_its_time() -> None:
    backoff = Backoff(delays=(1, 2, 5), retry_for_s=10)
    assert [backoff.delay(retry, failing_for_s=retry) for retry in range(1, 6)] == [1, 2, 5, 5, 5]
    assert backoff.delay(6, failing_for_s=10) is None


async def _run_until_idle(queue: ReconcileQueue, seconds: float) -> None:
    task = asyncio.create_task(queue.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_transient_failure_is_retried_with_backoff_until_it_succeeds() -> None:
    calls: list[tuple[Key, str]] = []

    async def reconcile(key: Key, trigger: str) -> None:
        calls.append((key, trigger))
        if len(calls) < 3:
            raise kopf.TemporaryError("apiserver busy")

    queue = ReconcileQueue(reconcile, workers=2, backoff=Backoff(delays=(0.01, 0.02), retry_for_s=5))
    queue.add(("team-a", "resnet"), "child")
    await _run_until_idle(queue, 0.3)

    assert calls == [(("team-a", "resnet"), "child"), (("team-a", "resnet"), "retry"), (("team-a", "resnet"), "retry")]
    assert len(queue) == 0


async def test_retries_are_bounded_and_permanent_errors_are_not_retried() -> None:
    calls: list[Key] = []

    async def reconcile(key: Key, trigger: str) -> None:
        calls.append(key)
        raise kopf.TemporaryError("down") if key[1] == "flaky" else kopf.PermanentError("bad spec")

    queue = ReconcileQueue(reconcile, workers=1, backoff=Backoff(delays=(0.1,), retry_for_s=0.15))
    queue.add(("ns", "flaky"), "child")
    queue.add(("ns", "broken"), "child")
    await _run_until_idle(queue, 0.5)

    # Retried at 0.1 and 0.2 s after the first failure; at 0.2 s it has failed for longer than 0.15 s.
    assert calls.count(("ns", "flaky")) == 3 and calls.count(("ns", "broken")) == 1


async def test_triggers_during_a_run_fold_into_one_more_run_and_one_key_never_runs_twice_at_once() -> None:
    running: set[Key] = set()
    runs: list[str] = []
    release = asyncio.Event()

    async def reconcile(key: Key, trigger: str) -> None:
        assert key not in running
        running.add(key)
        runs.append(trigger)
        if len(runs) == 1:
            await release.wait()
        running.discard(key)

    queue = ReconcileQueue(reconcile, workers=4)
    task = asyncio.create_task(queue.run())
    queue.add(("ns", "a"), "child")
    await asyncio.sleep(0.01)
    for trigger in ("child", "resync", "autoscaler"):
        queue.add(("ns", "a"), trigger)
    release.set()
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert runs == ["child", "child"]


async def test_a_spec_change_takes_the_place_of_a_waiting_trigger() -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def reconcile(key: Key, trigger: str) -> None:
        runs.append(trigger)
        if len(runs) == 1:
            await release.wait()

    queue = ReconcileQueue(reconcile, workers=1)
    task = asyncio.create_task(queue.run())
    queue.add(("ns", "a"), "child")
    await asyncio.sleep(0.01)
    queue.add(("ns", "a"), "resync")
    queue.add(("ns", "a"), SPEC)
    queue.add(("ns", "a"), "child")
    release.set()
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert runs == ["child", SPEC]


async def test_a_childs_change_goes_before_a_burst_of_new_model_deployments_which_still_get_their_turn() -> None:
    runs: list[str] = []

    async def reconcile(key: Key, trigger: str) -> None:
        runs.append(key[1])

    queue = ReconcileQueue(reconcile, workers=1)
    for index in range(3):
        queue.add(("ns", f"new-{index}"), SPEC)
    changed = [f"serving-{index}" for index in range(CHILD_CHANGES_IN_A_ROW + 2)]
    for name in changed:
        queue.add(("ns", name), "child" if name != "serving-1" else "autoscaler")
    await _run_until_idle(queue, 0.05)

    assert runs == [*changed[:CHILD_CHANGES_IN_A_ROW], "new-0", *changed[CHILD_CHANGES_IN_A_ROW:], "new-1", "new-2"]
