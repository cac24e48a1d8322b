"""The audit log: one JSON line per request to a key-protected route, on stdout (a stable format, docs/runtime.md).

Each line is one object with the fields of `RequestRecord.fields`, always all of them, in that order; fields that
do not apply are null. Version 1 never renames or removes a field; new fields may be added at the end. The key
itself is never written, only its owner (the entry's name in the key Secret), and the request body only when
`audit_payloads` asks for it (`PayloadRecord`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import queue
import sys
import threading
import time

import orjson
from starlette.responses import Response
from starlette.types import Scope

AUDIT_FORMAT = "modeldeploy.audit/v1"
REQUEST_ID_HEADER = b"x-request-id"
# The ASGI scope key under which a request's record travels to the handlers that fill in what they know.
SCOPE_KEY = "modeldeploy.request"
_log = logging.getLogger(__name__)


class RequestRecord:
    """What one request did; handlers fill in the model, protocol and tokens, the access layer the rest.

    Made for every request on the event loop, so it sets its slots and nothing more (a keyword-only dataclass of
    these fields cost five times as much to make); `line` spells out the audit line's fields, in their order.
    """

    __slots__ = (
        "_latency_s",
        "_started",
        "client",
        "key_owner",
        "method",
        "model",
        "protocol",
        "request_bytes",
        "request_id",
        "response_bytes",
        "route",
        "status",
        "tokens",
    )

    def __init__(self, request_id: bytes, method: str, route: str, client: str | None, started: float) -> None:
        self.request_id = request_id  # as echoed in the X-Request-Id header
        self.method = method
        self.route = route
        self.client = client
        self.key_owner: str | None = None
        self.model: str | None = None
        self.protocol: str | None = None
        self.status: int | None = None
        self.request_bytes = 0
        self.response_bytes = 0
        # Tokens a text model read and wrote for this request; the generation path sets it, the limits charge it.
        self.tokens: int | None = None
        self._started = started  # time.perf_counter() when the request arrived
        self._latency_s = 0.0

    def received(self, chunk: bytes) -> None:
        self.request_bytes += len(chunk)

    def stamp(self, response: Response) -> None:
        """For a route that answers with one whole `Response` (the inference fast path): its status and size
        recorded and the request id header added before it is sent, instead of read from the messages it sends."""
        self.status = response.status_code
        self.response_bytes = len(response.body)
        response.raw_headers.append((REQUEST_ID_HEADER, self.request_id))

    def end(self) -> None:
        self._latency_s = time.perf_counter() - self._started

    def fields(self, perf_to_wall: float) -> dict[str, object]:
        """The audit line's fields, in their order; `perf_to_wall` turns a `time.perf_counter()` reading into
        epoch seconds."""
        return {
            "format": AUDIT_FORMAT,
            "time": _rfc3339_utc(self._started + perf_to_wall),
            "request_id": self.request_id.decode(),
            "key_owner": self.key_owner,
            "model": self.model,
            "protocol": self.protocol,
            "method": self.method,
            "route": self.route,
            "status": self.status,
            # Milliseconds with three decimals; an integer division is exact where round() is slow.
            "latency_ms": int(self._latency_s * 1_000_000) / 1000,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "tokens": self.tokens,
            "client": self.client,
        }

    def line(self, perf_to_wall: float) -> bytes:
        return orjson.dumps(self.fields(perf_to_wall), option=orjson.OPT_APPEND_NEWLINE)


class PayloadRecord(RequestRecord):
    """A record that keeps the request's body too (`audit_payloads`): its line ends with `payload_base64`."""

    __slots__ = ("_chunks",)

    def __init__(self, request_id: bytes, method: str, route: str, client: str | None, started: float) -> None:
        super().__init__(request_id, method, route, client, started)
        self._chunks: list[bytes] = []

    def received(self, chunk: bytes) -> None:
        self.request_bytes += len(chunk)
        self._chunks.append(chunk)

    def fields(self, perf_to_wall: float) -> dict[str, object]:
        return {**super().fields(perf_to_wall), "payload_base64": base64.b64encode(b"".join(self._chunks)).decode()}


@functools.lru_cache(maxsize=4)
def _second_utc(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


@functools.lru_cache(maxsize=16)
def _millisecond_utc(millisecond: int) -> str:
    second, fraction = divmod(millisecond, 1000)
    return f"{_second_utc(second)}.{fraction:03d}Z"


def _rfc3339_utc(timestamp: float) -> str:
    """`2026-12-01T11:37:24.587Z`; kept per millisecond, which the requests of a busy server share."""
    return _millisecond_utc(int(timestamp * 1000))


def request_record(scope: Scope) -> RequestRecord | None:
    """The record of the request in `scope`; None on the open routes (probes and scrapes)."""
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    return record


class AuditLog:
    """Gathers the finished records and, every `FLUSH_AFTER_S` (or `FLUSH_AT_LINES` records), hands them to a writer
    thread that makes their lines and writes them.

    The event loop only appends the record to a list: making a line (the time, orjson) costs several times more
    amid a busy server's requests than in one tight loop over a batch (docs/benchmarks.md, issue 9), and the
    `write()` calls happen in that thread too, so a slow reader of stdout never stalls the event loop. The thread is
    at most `MAX_BATCHES_BEHIND` batches behind: past that, flushing waits for it (memory stays bounded, and no line
    is dropped unless stdout itself fails). A line reaches stdout about `FLUSH_AFTER_S` after its request ended;
    `close` writes what is left when the server shuts down (not when the container is killed).
    """

    FLUSH_AFTER_S = 0.05
    FLUSH_AT_LINES = 1024
    MAX_BATCHES_BEHIND = 64

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdout.fileno() if fd is None else fd
        self._records: list[RequestRecord] = []
        self._flush_scheduled = False
        self._batches: queue.Queue[tuple[list[RequestRecord], float] | None] = queue.Queue(self.MAX_BATCHES_BEHIND)
        self._writer: threading.Thread | None = None

    def write(self, record: RequestRecord) -> None:
        """Takes the record of a request that has ended; its line is made later, in the writer thread."""
        self._records.append(record)
        if len(self._records) >= self.FLUSH_AT_LINES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._records:
            return
        records, self._records = self._records, []
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_batches, name="audit-writer", daemon=True)
            self._writer.start()
        # Turns the records' time.perf_counter() readings into epoch seconds; taken per batch, so a step of the
        # wall clock shows within one batch.
        self._batches.put((records, time.time() - time.perf_counter()))

    def close(self) -> None:
        """Writes the lines still pending and stops the writer thread."""
        self.flush()
        if self._writer is not None:
            self._batches.put(None)
            self._writer.join()
            self._writer = None

    def _write_batches(self) -> None:
        while (batch := self._batches.get()) is not None:
            records, perf_to_wall = batch
            pending = memoryview(b"".join([record.line(perf_to_wall) for record in records]))
            del records, batch  # the records go now, not when the next batch arrives
            try:
                while pending:
                    pending = pending[os.write(self._fd, pending) :]
            except OSError as error:
                # Kept draining: a writer that stopped would soon stall the event loop on a full queue.
                _log.error("cannot write %d bytes of audit lines: %s", len(pending), error)
