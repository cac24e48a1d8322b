"""The inference endpoints' fast path, and the metrics of every inference request.

FastAPI's routing and dependency solving cost more than the whole model call of a small model, so
inference requests skip them: this pure ASGI layer matches the two inference paths itself, calls the same
handlers the documented FastAPI routes call, maps errors through `protocol/errors.py`, and counts and times
each request by model, protocol and status code. Everything else goes on to FastAPI.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from modeldeploy_runtime.access.audit import request_record
from modeldeploy_runtime.errors import ServingError
from modeldeploy_runtime.protocol.errors import serving_error_response, unexpected_error_response
from modeldeploy_runtime.protocol.v1 import predict_v1
from modeldeploy_runtime.protocol.v2 import infer_v2
from modeldeploy_runtime.service import InferenceService

Handler = Callable[[InferenceService, str, Request], Awaitable[Response]]
# The scope key under which `answers_on_fast_path` leaves its match for the fast path.
_MATCH_KEY = "modeldeploy.fast_path"

_INFERENCE_PATHS: tuple[tuple[re.Pattern[str], str, Handler], ...] = (
    (re.compile(r"^/v2/models/([^/]+)/infer$"), "v2", infer_v2),
    (re.compile(r"^/v1/models/([^/]+):predict$"), "v1", predict_v1),
)


class InferenceFastPath:
    def __init__(self, app: ASGIApp, service: InferenceService) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The access layer may have matched this request already (`answers_on_fast_path`).
        matched = scope[_MATCH_KEY] if _MATCH_KEY in scope else _match(scope)
        if matched is None:
            await self._app(scope, receive, send)
            return
        model_name, protocol, handler = matched
        record = request_record(scope)
        if record is not None:
            record.model, record.protocol = model_name, protocol
        started = time.perf_counter()
        try:
            response = await handler(self._service, model_name, Request(scope, receive))
        except ServingError as error:
            response = serving_error_response(error, scope["path"])
        except Exception:
            response = unexpected_error_response(scope["path"])
        if record is not None:
            record.stamp(response)
        try:
            await response(scope, receive, send)
        finally:
            metrics = self._service.metrics
            metrics.observe_request(
                metrics.model_label(model_name), protocol, response.status_code, time.perf_counter() - started
            )


def answers_on_fast_path(scope: Scope) -> bool:
    """Whether the fast path answers this request (`AccessControl` then leaves it to stamp its audit record). The
    match is kept in the scope, so that the fast path does not match the path a second time."""
    matched = scope[_MATCH_KEY] = _match(scope)
    return matched is not None


def _match(scope: Scope) -> tuple[str, str, Handler] | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    for pattern, protocol, handler in _INFERENCE_PATHS:
        found = pattern.match(scope["path"])
        if found:
            return found.group(1), protocol, handler
    return None
