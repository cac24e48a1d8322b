"""The one place that turns errors into HTTP answers: the status code, the headers and the protocol's error shape.

Open Inference Protocol and KServe v1 answer `{"error": "..."}`; OpenAI-compatible routes answer
`{"error": {"message", "type", "param", "code"}}`, which OpenAI client libraries parse. Nothing here ever sends a
traceback or an exception's own text: only `ServingError.message`, which is written for the client.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modeldeploy_runtime.errors import (
    BodyReadTimedOut,
    ClientDisconnected,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RequestTimedOut,
    ServingError,
    Unauthenticated,
)

_log = logging.getLogger(__name__)

STATUS_OF: dict[type[ServingError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    ModelNotFound: 404,
    BodyReadTimedOut: 408,
    PayloadTooLarge: 413,
    Overloaded: 429,
    RateLimited: 429,
    ModelNotReady: 503,
    RequestTimedOut: 503,
    InferenceFailed: 500,
    # nginx's "client closed request": never seen by the client, but counted in the metrics.
    ClientDisconnected: 499,
}
# RFC 6750: a 401 names the scheme the client should use.
_EXTRA_HEADERS: dict[type[ServingError], dict[str, str]] = {Unauthenticated: {"WWW-Authenticate": "Bearer"}}
# OpenAI's error `type` for each status it documents; others are `server_error`.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",  # as OpenAI answers an unknown model
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",
}
# Both OpenAI's API (a text model's: /v1/models, /v1/completions, /v1/chat/completions) and KServe v1 (a tensor
# model's: /v1/models, /v1/models/{name}, /v1/models/{name}:predict) live under /v1, and even share `/v1/models`;
# a server serves one of them: what is under /v1 is OpenAI's on a text model's server, KServe v1's on the other.
OPENAI_PREFIX = "/v1"
INTERNAL_ERROR_MESSAGE = "internal error; the server log has the details"


def is_openai_path(path: str, text_model: bool) -> bool:
    return text_model and (path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/"))


def error_body(
    path: str, status: int, message: str, error: ServingError | None = None, text_model: bool = False
) -> bytes:
    """The error document in the shape of the protocol that `path` belongs to on this server."""
    if is_openai_path(path, text_model):
        document = {
            "message": message,
            "type": _OPENAI_TYPES.get(status, "server_error"),
            # `param` names the field at fault; `code` is OpenAI's machine-readable reason, where one applies.
            "param": error.param if isinstance(error, InvalidInput) else None,
            "code": "model_not_found" if isinstance(error, ModelNotFound) else None,
        }
        return orjson.dumps({"error": document})
    return orjson.dumps({"error": message})


def error_response(
    status: int,
    message: str,
    retry_after_s: int | None = None,
    path: str = "",
    error: ServingError | None = None,
    text_model: bool = False,
) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    body = error_body(path, status, message, error, text_model)
    return Response(body, status, headers=headers, media_type="application/json")


def serving_error_response(error: ServingError, path: str = "", text_model: bool = False) -> Response:
    status = STATUS_OF.get(type(error), 500)
    if status >= 500:
        _log.warning("%s: %s", type(error).__name__, error.message)
    response = error_response(status, error.message, error.retry_after_s, path, error, text_model)
    response.headers.update(_EXTRA_HEADERS.get(type(error), {}))
    return response


def unexpected_error_response(path: str = "", text_model: bool = False) -> Response:
    """For a bug: the traceback goes to the log, the client learns only that it happened."""
    _log.exception("unhandled error")
    return error_response(500, INTERNAL_ERROR_MESSAGE, path=path, text_model=text_model)


def install_error_handlers(app: FastAPI, text_model: bool) -> None:
    """`text_model`: the app serves OpenAI's API under /v1 (else KServe v1)."""

    async def on_serving_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ServingError)
        return serving_error_response(error, request.url.path, text_model)

    async def on_validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()
        )
        return error_response(400, f"invalid request: {problems}", path=request.url.path, text_model=text_model)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return error_response(error.status_code, str(error.detail), path=request.url.path, text_model=text_model)

    async def on_unexpected_error(request: Request, _: Exception) -> Response:
        return unexpected_error_response(request.url.path, text_model)

    app.add_exception_handler(ServingError, on_serving_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)
