"""HTTP plumbing shared by the protocols: the body as a stream of chunks, header numbers, fast JSON replies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modeldeploy_runtime.access.audit import request_record
from modeldeploy_runtime.errors import ClientDisconnected, InvalidInput, ServingError
from modeldeploy_runtime.protocol.errors import serving_error_response, unexpected_error_response
from modeldeploy_runtime.service import InferenceService

JSON_MEDIA_TYPE = "application/json"
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def parse_byte_count(value: str) -> int | None:
    """A header's byte count, or None when it is not a plain decimal number.

    `str.isdigit` alone accepts digits `int` refuses (superscripts: b'\\xb2'); only ASCII digits count.
    """
    return int(value) if value.isascii() and value.isdigit() else None


def declared_length(request: Request) -> int | None:
    """The body's Content-Length, None for a chunked body; InvalidInput when it is not a number."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    length = parse_byte_count(declared)
    if length is None:
        raise InvalidInput(f"Content-Length header {declared!r} is not a number of bytes")
    return length


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; every route reads its body here, so here its bytes are counted for the audit."""
    record = request_record(request.scope)
    try:
        async for chunk in request.stream():
            if chunk:
                if record is not None:
                    record.received(chunk)
                yield chunk
    except ClientDisconnect:
        raise ClientDisconnected("client closed the connection while sending the body") from None


def parse_json(raw: bytes | bytearray | memoryview, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"{what} is not valid JSON: {error}") from None


def json_response(document: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(document, option=_ORJSON_OPTIONS), status_code, media_type=JSON_MEDIA_TYPE)


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client disconnects; only meaningful once the body has been read."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def observed(
    service: InferenceService,
    protocol: str,
    request: Request,
    handle: Callable[[], Awaitable[Response]],
    model: str | None = None,
) -> Response:
    """Runs a text model's route (none is on the fast path): its protocol (and model, when the path names it) in
    the access record, errors in the shape of the request's protocol (protocol/errors.py), the request counted
    and timed (a stream until its headers)."""
    record = request_record(request.scope)
    if record is not None:
        record.protocol, record.model = protocol, model
    started = time.perf_counter()
    try:
        response = await handle()
    except ServingError as error:
        response = serving_error_response(error, request.url.path, text_model=True)
    except Exception:
        response = unexpected_error_response(request.url.path, text_model=True)
    service.metrics.observe_request(service.name, protocol, response.status_code, time.perf_counter() - started)
    return response
