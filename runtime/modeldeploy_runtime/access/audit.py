"""The audit log: one JSON line per request to a key-protected route, on stdout (a stable format, docs/runtime.md).

Each line is one object with the fields of `AuditRecord.line`, always all of them, in that order; fields that do
not apply are null. Version 1 never renames or removes a field; new fields may be added at the end. The key
itself is never written, only its owner (the entry's name in the key Secret), and the request body only when
`audit_payloads` asks for it.
"""

from __future__ import annotations

import base64
import datetime
import os
import sys
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
    started_wall: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def line(self, latency_s: float) -> bytes:
        document = {
            "format": AUDIT_FORMAT,
            "time": self.started_wall.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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


def request_record(scope: Scope) -> RequestRecord | None:
    """The record of the request in `scope`; None on the open routes (probes and scrapes)."""
    record: RequestRecord | None = scope.get(SCOPE_KEY)
    return record


class AuditLog:
    """Writes each line with one unbuffered write: nothing is lost in a buffer when the container is killed."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdout.fileno() if fd is None else fd

    def write(self, record: RequestRecord, latency_s: float) -> None:
        line = memoryview(record.line(latency_s))
        while line:
            line = line[os.write(self._fd, line) :]
