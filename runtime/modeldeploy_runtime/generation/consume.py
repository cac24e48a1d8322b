"""Reading generated sequences, for every protocol: whole (racing the client's disconnect) or as one stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modeldeploy_runtime.errors import ClientDisconnected
from modeldeploy_runtime.generation.engine import GeneratedSequence, TextDelta


@dataclass(frozen=True)
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str


async def _read_whole(sequence: GeneratedSequence) -> Completion:
    pieces = []
    last = TextDelta("", 0)
    async for last in sequence:
        pieces.append(last.text)
    return Completion("".join(pieces), last.completion_tokens, last.finish_reason or "stop")


async def complete(
    sequences: Sequence[GeneratedSequence], wait_for_disconnect: Callable[[], Awaitable[object]]
) -> list[Completion]:
    """Every sequence to its end; a client that goes away first cancels them all (their slots free at once)."""
    readers = [asyncio.ensure_future(_read_whole(sequence)) for sequence in sequences]
    everything: asyncio.Future[list[Completion]] = asyncio.gather(*readers)
    disconnected: asyncio.Future[Any] = asyncio.ensure_future(wait_for_disconnect())
    try:
        await asyncio.wait([everything, disconnected], return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnected.cancel()
        if not everything.done():
            everything.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await everything
    if everything.cancelled():
        raise ClientDisconnected("client closed the connection while its text was generated")
    return everything.result()


async def merge(sequences: Sequence[GeneratedSequence]) -> AsyncIterator[tuple[int, TextDelta]]:
    """The deltas of all sequences as they come, with each one's index; closing it cancels the rest."""
    if len(sequences) == 1:
        async for delta in sequences[0]:
            yield 0, delta
        return
    deltas: asyncio.Queue[tuple[int, TextDelta] | BaseException] = asyncio.Queue()

    async def forward(index: int, sequence: GeneratedSequence) -> None:
        try:
            async for delta in sequence:
                deltas.put_nowait((index, delta))
        except Exception as error:
            deltas.put_nowait(error)

    tasks = [asyncio.ensure_future(forward(index, sequence)) for index, sequence in enumerate(sequences)]
    try:
        unfinished = len(sequences)
        while unfinished:
            item = await deltas.get()
            if isinstance(item, BaseException):
                raise item
            if item[1].finish_reason is not None:
                unfinished -= 1
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
