"""OpenAI-compatible text generation: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

The official `openai` client works against this server's base URL unmodified. Parameters OpenAI does not
know are refused as OpenAI refuses them ("Unrecognized request argument supplied"), except vLLM's
`ignore_eos`, which load generators send. Errors take OpenAI's shape (protocol/errors.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from modeldeploy_runtime.errors import ServingError
from modeldeploy_runtime.generation import GeneratedSequence, GenerationEngine
from modeldeploy_runtime.generation.consume import Completion, complete, merge
from modeldeploy_runtime.protocol.errors import OPENAI_PREFIX, serving_error_response
from modeldeploy_runtime.protocol.http import json_response, observed, wait_for_disconnect
from modeldeploy_runtime.protocol.openapi import request_body
from modeldeploy_runtime.protocol.text_request import (
    SamplingFields,
    StrictModel,
    TokenTally,
    parse_text_request,
    record_model,
)
from modeldeploy_runtime.service import InferenceService

PROTOCOL = "openai"
SSE_MEDIA_TYPE = "text/event-stream"
_MAX_CHOICES = 16


class StreamOptions(StrictModel):
    include_usage: bool = False


class _GenerationRequest(SamplingFields):
    model: str
    n: Annotated[int, Field(ge=1, le=_MAX_CHOICES)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class CompletionRequest(_GenerationRequest):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=_MAX_CHOICES)]


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def template_input(self) -> dict[str, Any]:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        # Templates written before OpenAI's "developer" role know its older name.
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatCompletionRequest(_GenerationRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None


def openai_router(service: InferenceService) -> APIRouter:
    router = APIRouter(prefix=OPENAI_PREFIX, tags=["OpenAI"])

    @router.get("/models")
    async def list_models() -> Response:
        """The served model, as OpenAI lists models."""
        created = service.text_model_created or int(time.time())  # while loading: not yet known
        model = {"id": service.name, "object": "model", "created": created, "owned_by": "modeldeploy"}
        return json_response({"object": "list", "data": [model]})

    @router.post("/completions", openapi_extra=request_body(CompletionRequest))
    async def completions(request: Request) -> Response:
        """Text completion of one prompt or several; `stream: true` answers with server-sent events."""
        return await observed(service, PROTOCOL, request, partial(_complete_text, service, request))

    @router.post("/chat/completions", openapi_extra=request_body(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        """Chat: the messages go through the model's chat template; `stream: true` answers with events."""
        return await observed(service, PROTOCOL, request, partial(_complete_chat, service, request))

    return router


async def _complete_text(service: InferenceService, request: Request) -> Response:
    parsed = await parse_text_request(request, service, CompletionRequest)
    record_model(request, parsed.model)
    engine = service.text_engine(parsed.model)
    prompts = [parsed.prompt] if isinstance(parsed.prompt, str) else parsed.prompt
    encoded = [engine.model.encode_text(prompt) for prompt in prompts]
    sequences = _start(engine, parsed, encoded, "prompt", parsed.max_tokens, "max_tokens")
    prompt_tokens = sum(len(ids) for ids in encoded) * parsed.n
    reply = _Reply("cmpl", "text_completion", service.name, TokenTally(request, prompt_tokens))
    if parsed.stream:
        return _event_stream(reply.text_chunks(sequences, _include_usage(parsed)), request.url.path)
    completions = await complete(sequences, partial(wait_for_disconnect, request))
    choices = [
        {"index": index, "text": item.text, "logprobs": None, "finish_reason": item.finish_reason}
        for index, item in enumerate(completions)
    ]
    return json_response(reply.document(choices, completions))


async def _complete_chat(service: InferenceService, request: Request) -> Response:
    parsed = await parse_text_request(request, service, ChatCompletionRequest)
    record_model(request, parsed.model)
    engine = service.text_engine(parsed.model)
    prompt_ids = engine.model.encode_chat([message.template_input() for message in parsed.messages])
    max_tokens: int | None
    if parsed.max_completion_tokens is not None:
        max_tokens, max_tokens_param = parsed.max_completion_tokens, "max_completion_tokens"
    else:
        max_tokens, max_tokens_param = parsed.max_tokens, "max_tokens"
    sequences = _start(engine, parsed, [prompt_ids], "messages", max_tokens, max_tokens_param)
    reply = _Reply("chatcmpl", "chat.completion", service.name, TokenTally(request, len(prompt_ids) * parsed.n))
    if parsed.stream:
        return _event_stream(reply.chat_chunks(sequences, _include_usage(parsed)), request.url.path)
    completions = await complete(sequences, partial(wait_for_disconnect, request))
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": item.text},
            "logprobs": None,
            "finish_reason": item.finish_reason,
        }
        for index, item in enumerate(completions)
    ]
    return json_response(reply.document(choices, completions))


def _start(
    engine: GenerationEngine,
    parsed: _GenerationRequest,
    prompts: list[list[int]],
    prompt_param: str,
    max_tokens: int | None,
    max_tokens_param: str,
) -> list[GeneratedSequence]:
    """Admits every choice of every prompt, or none: all prompts are checked against the context first."""
    budgets = [engine.check_length(len(ids), prompt_param, max_tokens, max_tokens_param) for ids in prompts]
    sequences: list[GeneratedSequence] = []
    try:
        for ids, budget in zip(prompts, budgets, strict=True):
            sequences.extend(engine.generate(ids, parsed.sampling(budget), parsed.n))
    except ServingError:
        for sequence in sequences:
            engine.cancel(sequence.request_id)
            engine.release(sequence)
        raise
    return sequences


def _include_usage(parsed: _GenerationRequest) -> bool:
    return parsed.stream_options is not None and parsed.stream_options.include_usage


class _Reply:
    """The fields every document and chunk of one answer shares, and its token count."""

    def __init__(self, id_prefix: str, kind: str, model: str, tokens: TokenTally) -> None:
        self.id = f"{id_prefix}-{uuid.uuid4().hex}"
        self.kind = kind
        self.model = model
        self.created = int(time.time())
        self.tokens = tokens
        self.prompt_tokens = tokens.prompt_tokens

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def usage(self, completion_tokens: int) -> dict[str, int]:
        self.tokens.completed(completion_tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def document(self, choices: list[dict[str, Any]], completions: list[Completion]) -> dict[str, Any]:
        usage = self.usage(sum(item.completion_tokens for item in completions))
        return {**self._head(self.kind), "choices": choices, "usage": usage}

    async def text_chunks(self, sequences: list[GeneratedSequence], include_usage: bool) -> AsyncIterator[bytes]:
        counts = [0] * len(sequences)
        async for index, delta in merge(sequences):
            counts[index] = delta.completion_tokens
            self.tokens.completed(sum(counts))
            choice = {"index": index, "text": delta.text, "logprobs": None, "finish_reason": delta.finish_reason}
            yield _event(self._chunk(self.kind, choice, include_usage))
        if include_usage:
            yield _event({**self._head(self.kind), "choices": [], "usage": self.usage(sum(counts))})

    async def chat_chunks(self, sequences: list[GeneratedSequence], include_usage: bool) -> AsyncIterator[bytes]:
        kind = "chat.completion.chunk"
        for index in range(len(sequences)):
            opening = {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            yield _event(self._chunk(kind, opening, include_usage))
        counts = [0] * len(sequences)
        async for index, delta in merge(sequences):
            counts[index] = delta.completion_tokens
            self.tokens.completed(sum(counts))
            if not delta.text and delta.finish_reason is None:
                continue
            content = {"content": delta.text} if delta.text else {}
            choice = {"index": index, "delta": content, "logprobs": None, "finish_reason": delta.finish_reason}
            yield _event(self._chunk(kind, choice, include_usage))
        if include_usage:
            yield _event({**self._head(kind), "choices": [], "usage": self.usage(sum(counts))})

    def _chunk(self, kind: str, choice: dict[str, Any], include_usage: bool) -> dict[str, Any]:
        chunk = {**self._head(kind), "choices": [choice]}
        if include_usage:
            chunk["usage"] = None
        return chunk


def _event(document: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(document) + b"\n\n"


def _event_stream(chunks: AsyncIterator[bytes], path: str) -> StreamingResponse:
    return StreamingResponse(_ending_with_done(chunks, path), media_type=SSE_MEDIA_TYPE)


async def _ending_with_done(chunks: AsyncIterator[bytes], path: str) -> AsyncIterator[bytes]:
    """Server-sent events ending in `data: [DONE]`; a failure after the headers is reported as an error event."""
    try:
        async for chunk in chunks:
            yield chunk
    except ServingError as error:
        yield b"data: " + serving_error_response(error, path, text_model=True).body + b"\n\n"
    yield b"data: [DONE]\n\n"
