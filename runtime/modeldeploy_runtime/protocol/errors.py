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
_OPENAI_PATH_PREFIXES = ("/v1/chat/", "/v1/completions", "/v1/embeddings", "/openai/")
INTERNAL_ERROR_MESSAGE = "internal error; the server log has the details"


def error_body(path: str, status: int, message: str, error: ServingError | None = None) -> bytes:
    """The error document in the shape of the protocol that `path` belongs to."""
    if path.startswith(_OPENAI_PATH_PREFIXES):
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
    status: int, message: str, retry_after_s: int | None = None, path: str = "", error: ServingError | None = None
) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return Response(error_body(path, status, message, error), status, headers=headers, media_type="application/json")


def serving_error_response(error: ServingError, path: str = "") -> Response:
    status = STATUS_OF.get(type(error), 500)
    if status >= 500:
        _log.warning("%s: %s", type(error).__name__, error.message)
    response = error_response(status, error.message, error.retry_after_s, path, error)
    response.headers.update(_EXTRA_HEADERS.get(type(error), {}))
    return response


def unexpected_error_response(path: str = "") -> Response:
    """For a bug: the traceback goes to the log, the client learns only that it happened."""
    _log.exception("unhandled error")
    return error_response(500, INTERNAL_ERROR_MESSAGE, path=path)


async def _on_serving_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServingError)
    return serving_error_response(error, request.url.path)


async def _on_validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()
    )
    return error_response(400, f"invalid request: {problems}", path=request.url.path)


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return error_response(error.status_code, str(error.detail), path=request.url.path)


async def _on_unexpected_error(request: Request, _: Exception) -> Response:
    return unexpected_error_response(request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _on_serving_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
