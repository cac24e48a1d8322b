"""The Open Inference Protocol's generate extension: `/v2/models/{name}/generate` and `/generate_stream`.

As KServe and Triton define it: `{"text_input": ..., "parameters": {...}}` in, `{"text_output": ...}` out; the
stream sends one server-sent event per piece of text. Errors keep v2's `{"error": "..."}` shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import Field
from starlette.responses import Response, StreamingResponse

from modeldeploy_runtime.errors import ServingError
from modeldeploy_runtime.generation import GeneratedSequence
from modeldeploy_runtime.generation.consume import complete, merge
from modeldeploy_runtime.protocol.http import json_response, observed, wait_for_disconnect
from modeldeploy_runtime.protocol.openapi import ERROR_RESPONSES, request_body
from modeldeploy_runtime.protocol.text_request import SamplingFields, StrictModel, TokenTally, parse_text_request
from modeldeploy_runtime.service import InferenceService

PROTOCOL = "v2"


class GenerateRequest(StrictModel):
    id: str | None = None
    text_input: str
    parameters: SamplingFields = Field(default_factory=lambda: SamplingFields())


def v2_generate_router(service: InferenceService) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])

    @router.post(
        "/models/{model_name}/generate", responses=ERROR_RESPONSES, openapi_extra=request_body(GenerateRequest)
    )
    async def generate(model_name: str, request: Request) -> Response:
        """The text that follows `text_input`, whole."""
        return await observed(
            service, PROTOCOL, request, partial(_generate, service, model_name, request, False), model=model_name
        )

    @router.post("/models/{model_name}/generate_stream", responses=ERROR_RESPONSES)
    async def generate_stream(model_name: str, request: Request) -> Response:
        """The text that follows `text_input`, as server-sent events while it is generated."""
        return await observed(
            service, PROTOCOL, request, partial(_generate, service, model_name, request, True), model=model_name
        )

    return router


async def _generate(service: InferenceService, model_name: str, request: Request, stream: bool) -> Response:
    engine = service.text_engine(model_name)
    parsed = await parse_text_request(request, service, GenerateRequest)
    prompt_ids = engine.model.encode_text(parsed.text_input)
    max_tokens = engine.check_length(len(prompt_ids), "text_input", parsed.parameters.max_tokens, "max_tokens")
    sequences = engine.generate(prompt_ids, parsed.parameters.sampling(max_tokens), 1)
    tokens = TokenTally(request, len(prompt_ids))
    head: dict[str, Any] = {"model_name": model_name, "model_version": "1"}
    if parsed.id is not None:
        head["id"] = parsed.id
    if stream:
        return StreamingResponse(_events(head, sequences, tokens), media_type="text/event-stream")
    (completion,) = await complete(sequences, partial(wait_for_disconnect, request))
    tokens.completed(completion.completion_tokens)
    return json_response({**head, "text_output": completion.text, "finish_reason": completion.finish_reason})


async def _events(head: dict[str, Any], sequences: list[GeneratedSequence], tokens: TokenTally) -> AsyncIterator[bytes]:
    try:
        async for _, delta in merge(sequences):
            tokens.completed(delta.completion_tokens)
            event = {**head, "text_output": delta.text, "finish_reason": delta.finish_reason}
            yield b"data: " + orjson.dumps(event) + b"\n\n"
    except ServingError as error:
        yield b"data: " + orjson.dumps({"error": error.message}) + b"\n\n"
