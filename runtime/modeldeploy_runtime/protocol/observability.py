"""Counts and times every inference request by model, protocol and status code, errors included."""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modeldeploy_runtime.metrics import RuntimeMetrics

_INFERENCE_PATHS = (
    (re.compile(r"^/v2/models/([^/]+)/infer$"), "v2"),
    (re.compile(r"^/v1/models/([^/]+):predict$"), "v1"),
)


class InferenceMetricsMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware): it adds a few microseconds, not a task per request."""

    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        matched = _match_inference_path(scope["path"])
        if matched is None:
            await self._app(scope, receive, send)
            return
        model_name, protocol = matched
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_record_status)
        finally:
            self._metrics.observe_request(
                self._metrics.model_label(model_name), protocol, status, time.perf_counter() - started
            )


def _match_inference_path(path: str) -> tuple[str, str] | None:
    """(model name, protocol) for an inference path, else None."""
    for pattern, protocol in _INFERENCE_PATHS:
        match = pattern.match(path)
        if match:
            return match.group(1), protocol
    return None
