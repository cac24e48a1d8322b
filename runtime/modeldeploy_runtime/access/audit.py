"""The audit log: one JSON line per request to a key-protected route, on stdout (a stable format, docs/runtime.md).

Each line is one object with the fields of `AuditRecord.line`, always all of them, in that order; fields that do
not apply are null. Version 1 never renames or removes a field; new fields may be added at the end. The key
itself is never written, only its owner (the entry's name in the key Secret), and the request body only when
`audit_payloads` asks for it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import sys
import time
from dataclasses import dataclass, field

import orjson
from starlette.types import Scope

AUDIT_FORMAT = "modeldeploy.audit/v1"
# The ASGI scope key under which a request's record travels to the handlers that fill in what they know.
SCOPE_KEY = "modeldeploy.request"


@dataclass(slots=True)
class RequestRecord:
    """What one request did; handlers fill in the model, protocol and tokens, the middleware the rest."""

    request_id: str
    method: str
    route: str
    client: str | None
    key_owner: str | None = None
    model: str | None = None
    protocol: str | None = None
    status: int | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    # Tokens a text model read and wrote for this request; the generation path sets it, the limits charge it.
    tokens: int | None = None
    payload: list[bytes] | None = None
    arrived: float = field(default_factory=time.time)

    def line(self, latency_s: float) -> bytes:
        document = {
            "format": AUDIT_FORMAT,
            "time": _rfc3339_utc(self.arrived),
            "request_id": self.request_id,
            "key_owner": self.key_owner,
            "model": self.model,
            "protocol": self.protocol,
            "method": self.method,
            "route": self.route,
            "status": self.status,
            "latency_ms": round(latency_s * 1000.0, 3),
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "tokens": self.tokens,
            "client": self.client,
        }
        if self.payload is not None:
            document["payload_base64"] = base64.b64encode(b"".join(self.payload)).decode()
        return orjson.dumps(document) + b"\n"


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
    """Writes the lines to a file descriptor in batches: one write per `FLUSH_AFTER_S` or per 64 KiB.

    A write per line would cost a system call per request; batched, the audit log costs the server a few
    microseconds a request. A line reaches stdout at most `FLUSH_AFTER_S` after its request ended, and the
    lines still buffered are written when the server shuts down (not when the container is killed outright).
    """

    FLUSH_AFTER_S = 0.05
    FLUSH_AT_BYTES = 64 * 1024

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdout.fileno() if fd is None else fd
        self._buffer = bytearray()
        self._flush_scheduled = False

    def write(self, record: RequestRecord, latency_s: float) -> None:
        self._buffer += record.line(latency_s)
        if len(self._buffer) >= self.FLUSH_AT_BYTES:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        pending = memoryview(self._buffer)
        while pending:
            pending = pending[os.write(self._fd, pending) :]
        pending.release()
        self._buffer.clear()
