"""A watch stream cut into lines: the apiserver's chunks fall anywhere, an event is one whole line."""

import asyncio
from collections.abc import AsyncIterator

import httpx2
from modeldeploy_operator.watch.informer import event_lines


def _lines_of(chunks: list[bytes]) -> list[bytes]:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def read() -> list[bytes]:
        return [line async for line in event_lines(httpx2.Response(200, content=stream()))]

    return asyncio.run(read())


def test_events_split_across_chunks_or_sharing_one_come_out_whole() -> None:
    chunks = [b'{"type":"ADDED"}\n{"type":"MOD', b'IFIED"}\n', b'{"type":"DELETED"}\n{"type":"BOOKMARK"}\n']
    events = [b'{"type":"ADDED"}', b'{"type":"MODIFIED"}', b'{"type":"DELETED"}', b'{"type":"BOOKMARK"}']
    assert _lines_of(chunks) == events


def test_blank_lines_are_skipped_and_an_event_cut_off_by_a_broken_connection_is_dropped() -> None:
    assert _lines_of([b"\n", b'{"type":"ADDED"}\n\n', b'{"type":"MODIF']) == [b'{"type":"ADDED"}']
    assert _lines_of([]) == []
