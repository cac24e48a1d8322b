"""Taking request bodies in under bounds that bad clients cannot exhaust.

A body is read before the request takes a place in the batching queue, so a client that sends its headers and
then trickles (or stalls) holds no queue place: it holds only the bytes it has sent, charged to a byte budget
shared by every request in the server, and it gets 408 when its body is not complete within the read deadline.
The budget stays charged with the body's size until the request is answered (the decoded tensors take about
as much), so memory is bounded by the budget rather than by (queue + batches) x payload cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from modeldeploy_runtime.errors import BodyReadTimedOut, Overloaded, PayloadTooLarge

Result = TypeVar("Result")
# Bodies up to this size are decoded on the event loop; larger ones in a thread, so that probes and small
# requests keep being answered while a large JSON body is parsed (the thread yields the GIL every 5 ms).
INLINE_DECODE_BYTES = 256 * 1024


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def check_room(self, count: int) -> None:
        """Raises Overloaded unless `count` more bytes fit."""
        if self.used + count > self.limit:
            raise Overloaded(f"the server holds {self.limit} bytes of requests, its limit; retry after a short delay")

    def take(self, count: int) -> None:
        self.check_room(count)
        self.used += count

    def give_back(self, count: int) -> None:
        self.used -= count


class ReceivedBody:
    """A request's body and its charge on the byte budget, held until `release`."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self._data: bytearray | None = bytearray()
        self.size = 0

    def take(self) -> bytearray:
        """Hands the bytes over and keeps no reference: once decoded, the raw body can be freed."""
        data, self._data = self._data, None
        assert data is not None, "a body is taken once"
        return data

    def release(self) -> None:
        self._budget.give_back(self.size)
        self.size = 0

    def _append(self, chunk: bytes) -> None:
        self._budget.take(len(chunk))
        self.size += len(chunk)
        assert self._data is not None
        self._data += chunk


async def receive_body(
    chunks: AsyncIterator[bytes], declared_length: int | None, cap_bytes: int, budget: ByteBudget, deadline_s: float
) -> ReceivedBody:
    """Reads a body within the payload cap, the byte budget and the read deadline; the caller releases it."""
    if declared_length is not None:
        if declared_length > cap_bytes:
            raise PayloadTooLarge(cap_bytes)
        budget.check_room(declared_length)  # no use reading what cannot be held
    body = ReceivedBody(budget)
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in chunks:
                if body.size + len(chunk) > cap_bytes:
                    raise PayloadTooLarge(cap_bytes)
                body._append(chunk)
    except TimeoutError:
        body.release()
        raise BodyReadTimedOut(f"the request body did not arrive within {deadline_s:g}s") from None
    except BaseException:
        body.release()
        raise
    return body


async def off_loop_when_large(size: int, function: Callable[..., Result], *args: object) -> Result:
    """Runs `function(*args)` here when `size` is small, else in a thread, so the event loop stays responsive."""
    if size <= INLINE_DECODE_BYTES:
        return function(*args)
    return await asyncio.to_thread(function, *args)
