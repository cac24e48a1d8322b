"""Access control for every route, by construction: the outermost ASGI layer, before routing and the fast path.

When keys or the audit are on, each request gets a request id (the client's `X-Request-Id` when it is a sane
one, else a new one; echoed in the response). Unless its path is one of the open paths (liveness, readiness,
metrics: probes and scrapes carry no key), it must carry a known API key and be within the key's limits, and it
is written to the audit log when it ends. Routes added later are covered without doing anything: nothing reaches
the app without passing here.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modeldeploy_runtime.access.audit import REQUEST_ID_HEADER, SCOPE_KEY, AuditLog, PayloadRecord, RequestRecord
from modeldeploy_runtime.access.keys import ApiKeys, bearer_token
from modeldeploy_runtime.access.limits import KeyLimits
from modeldeploy_runtime.errors import ServingError, Unauthenticated
from modeldeploy_runtime.protocol.errors import serving_error_response

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
_GUARDED_TYPES = frozenset({"http", "websocket"})
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class AccessControl:
    def __init__(
        self,
        app: ASGIApp,
        keys: ApiKeys | None,
        limits: KeyLimits | None,
        audit: AuditLog | None,
        payloads: bool,
        text_model: bool = False,
        stamps_its_answer: Callable[[Scope], bool] | None = None,
    ) -> None:
        self._app = app
        self._text_model = text_model  # refusals under /v1 take OpenAI's error shape
        self._keys = keys
        self._limits = limits
        self._audit = audit
        self._record_type = PayloadRecord if payloads else RequestRecord
        # Requests whose route answers with one whole Response and stamps it with the record itself
        # (`RequestRecord.stamp`): they get the server's `send` as it is.
        self._stamps_its_answer = stamps_its_answer
        # Without keys and audit there is nothing to check or record: requests go straight through.
        self._idle = keys is None and audit is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._idle or scope["type"] not in _GUARDED_TYPES or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        authorization = given_id = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == REQUEST_ID_HEADER:
                given_id = value
        if given_id is None or not _SANE_REQUEST_ID.match(given_id):
            # Identifies, need not be unguessable: Python's generator is several times cheaper than the system's.
            given_id = random.getrandbits(128).to_bytes(16).hex().encode()
        client = scope.get("client")
        record = scope[SCOPE_KEY] = self._record_type(
            given_id, scope.get("method", "GET"), scope["path"], client[0] if client else None, started
        )

        try:
            try:
                owner = record.key_owner = self._authenticate(authorization)
                if self._limits is not None and owner is not None:
                    self._limits.admit_request(owner)
            except ServingError as error:
                await self._refuse(error, scope, receive, _watched(send, record), self._text_model)
                return
            stamps = self._stamps_its_answer
            if stamps is None or not stamps(scope):
                send = _watched(send, record)
            await self._app(scope, receive, send)
        finally:
            if self._limits is not None and record.key_owner is not None and record.tokens:
                self._limits.charge_tokens(record.key_owner, record.tokens)
            if self._audit is not None:
                record.end()
                self._audit.write(record)

    def _authenticate(self, authorization: bytes | None) -> str | None:
        """The key's owner (None when no keys are configured); raises Unauthenticated."""
        if self._keys is None:
            return None
        key = bearer_token(authorization)
        owner = self._keys.owner_of(key) if key is not None else None
        if owner is None:
            raise Unauthenticated(
                "a valid API key is required: send it as 'Authorization: Bearer <key>'"
                if key is None
                else "the API key is not valid"
            )
        return owner

    @staticmethod
    async def _refuse(error: ServingError, scope: Scope, receive: Receive, send: Send, text_model: bool) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting: the server answers the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await serving_error_response(error, scope["path"], text_model)(scope, receive, send)


def _watched(send: Send, record: RequestRecord) -> Send:
    """The one wrapper on the way, for every route but those that stamp their answer themselves: the only place that
    sees any route's answer, so the request id is echoed and the status audited on routes added later too. The
    body's bytes are counted where bodies are read (protocol/http.py `body_chunks`), without wrapping `receive`."""

    async def responding(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = message["status"]
            message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, record.request_id)]
        elif message["type"] == "http.response.body":
            record.response_bytes += len(message.get("body", b""))
        await send(message)

    return responding
