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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modeldeploy_runtime.access.audit import SCOPE_KEY, AuditLog, RequestRecord
from modeldeploy_runtime.access.keys import ApiKeys, bearer_token
from modeldeploy_runtime.access.limits import KeyLimits
from modeldeploy_runtime.errors import ServingError, Unauthenticated
from modeldeploy_runtime.protocol.errors import serving_error_response

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
REQUEST_ID_HEADER = b"x-request-id"
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
    ) -> None:
        self._app = app
        self._text_model = text_model  # refusals under /v1 take OpenAI's error shape
        self._keys = keys
        self._limits = limits
        self._audit = audit
        self._payloads = payloads
        # Without keys and audit there is nothing to check or record: requests go straight through.
        self._idle = keys is None and audit is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._idle or scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        authorization = given_id = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == REQUEST_ID_HEADER:
                given_id = value
        request_id = _request_id(given_id)
        client = scope.get("client")
        record = RequestRecord(
            request_id=request_id,
            method=scope.get("method", "GET"),
            route=scope["path"],
            client=client[0] if client else None,
            payload=[] if self._payloads else None,
        )
        scope[SCOPE_KEY] = record
        echoed_id = request_id.encode()

        async def counting_receive() -> Message:
            message = await receive()
            body = message.get("body")
            if body:
                record.request_bytes += len(body)
                if record.payload is not None:
                    record.payload.append(body)
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, echoed_id)]
            elif message["type"] == "http.response.body":
                record.response_bytes += len(message.get("body", b""))
            await send(message)

        try:
            try:
                record.key_owner = self._authenticate(authorization)
                if self._limits is not None and record.key_owner is not None:
                    self._limits.admit_request(record.key_owner)
            except ServingError as error:
                await self._refuse(error, scope, receive, counting_send, self._text_model)
                return
            await self._app(scope, counting_receive, counting_send)
        finally:
            if self._limits is not None and record.key_owner is not None and record.tokens:
                self._limits.charge_tokens(record.key_owner, record.tokens)
            if self._audit is not None:
                self._audit.write(record, time.perf_counter() - started)

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


def _request_id(given: bytes | None) -> str:
    if given is not None and _SANE_REQUEST_ID.match(given):
        return given.decode()
    # Identifies, need not be unguessable: Python's generator is ten times cheaper than the system's.
    return f"{random.getrandbits(128):032x}"
