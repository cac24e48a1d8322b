"""HTTP plumbing shared by the protocols: capped body reading and fast JSON replies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson
import torch
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modeldeploy_runtime.errors import ClientDisconnected, InvalidInput, PayloadTooLarge, ServingError
from modeldeploy_runtime.model.servable import ServableModel
from modeldeploy_runtime.service import InferenceService

JSON_MEDIA_TYPE = "application/json"
Decoded = TypeVar("Decoded")
# Turns a body into what the protocol keeps for its answer, and the model's inputs.
Decoder = Callable[[bytes, Request, ServableModel], tuple[Decoded, list[torch.Tensor]]]
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


async def read_capped_body(request: Request, cap_bytes: int) -> bytes:
    """Refuses a declared oversize body before reading it, and a chunked one as soon as it passes the cap."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput(f"Content-Length header {declared!r} is not a number of bytes")
        if int(declared) > cap_bytes:
            raise PayloadTooLarge(cap_bytes)
    chunks = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap_bytes:
                raise PayloadTooLarge(cap_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected("client closed the connection while sending the body") from None
    return b"".join(chunks)


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


async def infer_admitted(
    service: InferenceService, model_name: str, request: Request, decode: Decoder[Decoded]
) -> tuple[ServableModel, Decoded, list[torch.Tensor]]:
    """Every protocol's inference: admit (or refuse) before reading the body, decode, run, wait."""
    async with service.admit(model_name) as (model, slot):
        body = await read_capped_body(request, service.settings.max_payload_bytes)
        decoded, inputs = decode(body, request, model)
        outputs = await slot.infer(inputs, partial(wait_for_disconnect, request))
    return model, decoded, outputs


@dataclass(frozen=True)
class ErrorRendering:
    """How one protocol answers a domain error, and a bug (protocol/errors.py holds both)."""

    serving: Callable[[ServingError], Response]
    unexpected: Callable[[Exception], Response]


async def observed(
    service: InferenceService, protocol: str, handle: Callable[[], Awaitable[Response]], errors: ErrorRendering
) -> Response:
    """Runs a route that is not on the fast path: errors rendered by the protocol, the request counted and timed
    (a stream until its headers)."""
    started = time.perf_counter()
    try:
        response = await handle()
    except ServingError as error:
        response = errors.serving(error)
    except Exception as error:
        response = errors.unexpected(error)
    service.metrics.observe_request(service.name, protocol, response.status_code, time.perf_counter() - started)
    return response
