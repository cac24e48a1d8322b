"""The one place that turns errors into HTTP answers: `{"error": "..."}` with the right status code."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modeldeploy_runtime.errors import (
    ClientDisconnected,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    RequestTimedOut,
    ServingError,
)

_log = logging.getLogger(__name__)

STATUS_OF: dict[type[ServingError], int] = {
    InvalidInput: 400,
    ModelNotFound: 404,
    PayloadTooLarge: 413,
    Overloaded: 429,
    ModelNotReady: 503,
    RequestTimedOut: 503,
    InferenceFailed: 500,
    # nginx's "client closed request": never seen by the client, but counted in the metrics.
    ClientDisconnected: 499,
}


# OpenAI's error types by status code, as its API sends them and its SDK's exceptions expect them.
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",
}


def error_response(status: int, message: str, retry_after_s: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return Response(
        orjson.dumps({"error": message}), status_code=status, headers=headers, media_type="application/json"
    )


def serving_error_response(error: ServingError) -> Response:
    status = STATUS_OF.get(type(error), 500)
    if status >= 500:
        _log.warning("%s: %s", type(error).__name__, error.message)
    return error_response(status, error.message, error.retry_after_s)


def openai_error_response(error: ServingError) -> Response:
    """OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`; `param` names the field at fault."""
    status = STATUS_OF.get(type(error), 500)
    if status >= 500:
        _log.warning("%s: %s", type(error).__name__, error.message)
    document = {
        "error": {
            "message": error.message,
            "type": _OPENAI_ERROR_TYPES.get(status, "server_error"),
            "param": error.param if isinstance(error, InvalidInput) else None,
            "code": "model_not_found" if isinstance(error, ModelNotFound) else None,
        }
    }
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    return Response(orjson.dumps(document), status_code=status, headers=headers, media_type="application/json")


def openai_unexpected_error_response(error: Exception) -> Response:
    """A bug's details (message, traceback, paths) stay in the log; the client learns only that it happened."""
    _log.exception("unhandled error")
    return openai_error_response(InferenceFailed(f"internal error ({error.__class__.__name__}); see the server log"))


async def _on_serving_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, ServingError)
    return serving_error_response(error)


async def _on_validation_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors()
    )
    return error_response(400, f"invalid request: {problems}")


async def _on_http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    return error_response(error.status_code, str(error.detail))


async def _on_unexpected_error(_: Request, error: Exception) -> Response:
    return unexpected_error_response(error)


def unexpected_error_response(error: Exception) -> Response:
    _log.exception("unhandled error")
    return error_response(500, f"internal error: {error.__class__.__name__}: {error}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _on_serving_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
