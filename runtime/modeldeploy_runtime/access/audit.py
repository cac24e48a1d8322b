"""The audit log: one JSON line per request to a key-protected route, on stdout (a stable format, docs/runtime.md).

Each line is one object with the fields of `RequestRecord.document`, always all of them, in that order; fields
that do not apply are null. Version 1 never renames or removes a field; new fields may be added at the end. The key
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
from starlette.types import Scope

AUDIT_FORMAT = "modeldeploy.audit/v1"
# The ASGI scope key under which a request's record travels to the handlers that fill in what they know.
SCOPE_KEY = "modeldeploy.request"
_log = logging.getLogger(__name__)


class RequestRecord:
    """What one request did; handlers fill in the model, protocol and tokens, the access layer the rest."""

    # Class-level defaults: a request pays only for the fields it sets.
    key_owner: str | None = None
    model: str | None = None
    protocol: str | None = None
    status: int | None = None
    request_bytes = 0
    response_bytes = 0
    # Tokens a text model read and wrote for this request; the generation path sets it, the limits charge it.
    tokens: int | None = None
    latency_s = 0.0

    def __init__(self, request_id: str, method: str, route: str, client: str | None, started: float) -> None:
        self.request_id = request_id
        self.method = method
        self.route = route
        self.client = client
        self.started = started  # time.perf_counter() when the request arrived

    def received(self, chunk: bytes) -> None:
        self.request_bytes += len(chunk)

    def end(self) -> None:
        self.latency_s = time.perf_counter() - self.started

    def document(self, perf_to_wall: float) -> dict[str, object]:
        """The audit line's object; `perf_to_wall` turns a `time.perf_counter()` reading into epoch seconds."""
        return {
            "format": AUDIT_FORMAT,
            "time": _rfc3339_utc(self.started + perf_to_wall),
            "request_id": self.request_id,
            "key_owner": self.key_owner,
            "model": self.model,
            "protocol": self.protocol,
            "method": self.method,
            "route": self.route,
            "status": self.status,
            # Milliseconds with three decimals; an integer division is exact where round() is slow.
            "latency_ms": int(self.latency_s * 1_000_000) / 1000,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "tokens": self.tokens,
            "client": self.client,
        }


class PayloadRecord(RequestRecord):
    """A record that keeps the request's body too (`audit_payloads`): its line ends with `payload_base64`."""

    def __init__(self, request_id: str, method: str, route: str, client: str | None, started: float) -> None:
        super().__init__(request_id, method, route, client, started)
        self.chunks: list[bytes] = []

    def received(self, chunk: bytes) -> None:
        self.request_bytes += len(chunk)
        self.chunks.append(chunk)

    def document(self, perf_to_wall: float) -> dict[str, object]:
        document = super().document(perf_to_wall)
        document["payload_base64"] = base64.b64encode(b"".join(self.chunks)).decode()
        return document


@functools.lru_cache(maxsize=4)
def _second_utc(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _rfc3339_utc(timestamp: float) -> str:
    """`2026-12-01T11:37:24.587Z`; the second's text is kept, as every request of that second shares it."""
    second = int(timestamp)
    return f"{_second_utc(second)}.{int((timestamp - second) * 1000):03d}Z"


def request_record(scope: Scope) -> RequestRecord | None:
    """The record of the request in `scope`; None on the open routes (probes and scrapes)."""
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    return record


class AuditLog:
    """Collects finished records; every `FLUSH_AFTER_S` (or `FLUSH_AT_RECORDS`) turns them into lines at once and
    hands those to a writer thread.

    A request costs the event loop one list append; the lines of a batch are made together (orjson), and the
    `write()` calls happen in the writer thread, so a slow reader of stdout never stalls the event loop. That thread
    is at most `MAX_BATCHES_BEHIND` batches behind: past that, flushing waits for it (memory stays bounded, and no
    line is dropped unless stdout itself fails). A line reaches stdout about `FLUSH_AFTER_S` after its request
    ended; `close` writes what is left when the server shuts down (not when the container is killed).
    """

    FLUSH_AFTER_S = 0.05
    FLUSH_AT_RECORDS = 1024
    MAX_BATCHES_BEHIND = 64

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdout.fileno() if fd is None else fd
        self._records: list[RequestRecord] = []
        self._flush_scheduled = False
        self._batches: queue.Queue[bytes | None] = queue.Queue(self.MAX_BATCHES_BEHIND)
        self._writer: threading.Thread | None = None

    def write(self, record: RequestRecord) -> None:
        self._records.append(record)
        if len(self._records) >= self.FLUSH_AT_RECORDS:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._records:
            return
        records, self._records = self._records, []
        perf_to_wall = time.time() - time.perf_counter()
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_batches, name="audit-writer", daemon=True)
            self._writer.start()
        lines = [orjson.dumps(record.document(perf_to_wall), option=orjson.OPT_APPEND_NEWLINE) for record in records]
        self._batches.put(b"".join(lines))

    def close(self) -> None:
        """Writes the lines still pending and stops the writer thread."""
        self.flush()
        if self._writer is not None:
            self._batches.put(None)
            self._writer.join()
            self._writer = None

    def _write_batches(self) -> None:
        while (batch := self._batches.get()) is not None:
            pending = memoryview(batch)
            try:
                while pending:
                    pending = pending[os.write(self._fd, pending) :]
            except OSError as error:
                # Kept draining: a writer that stopped would soon stall the event loop on a full queue.
                _log.error("cannot write %d bytes of audit lines: %s", len(pending), error)
