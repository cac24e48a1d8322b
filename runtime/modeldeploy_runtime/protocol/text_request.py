"""Parsing text-generation request bodies (OpenAI, v2 generate): every refusal names the field at fault.

Bodies are JSON validated by pydantic models. Invalid UTF-8 is decoded to lone surrogates rather than refused
outright, so the field that holds it can be named, and is then refused before any text reaches the tokenizer.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from modeldeploy_runtime.access.audit import request_record
from modeldeploy_runtime.errors import InvalidInput
from modeldeploy_runtime.generation import SamplingParams
from modeldeploy_runtime.intake import receive_body
from modeldeploy_runtime.protocol.http import body_chunks, declared_length
from modeldeploy_runtime.service import InferenceService

Parsed = TypeVar("Parsed", bound=BaseModel)
# The tags pydantic puts in an error's location for the member of a union it tried.
_UNION_MEMBER_TAGS = frozenset({"str", "int", "float", "bool"})
MAX_STOP_STRINGS = 4


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingFields(StrictModel):
    """The sampling parameters both protocols take, with OpenAI's names, bounds and defaults."""

    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_STRINGS)] | None = None
    seed: int | None = Field(
        default=None,
        description="Accepted; under continuous batching the sampler's random state is shared by the batch, so "
        "a seed does not make sampled text reproducible (greedy decoding, temperature 0, always is).",
    )
    ignore_eos: bool = Field(
        default=False, description="vLLM's extension: generate max_tokens tokens, past the eos token."
    )

    def sampling(self, max_tokens: int) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=stop,
            ignore_eos=self.ignore_eos,
        )


async def parse_text_request(request: Request, service: InferenceService, model_type: type[Parsed]) -> Parsed:
    """Reads the body under the same intake bounds as tensor requests (payload cap, byte budget, read deadline).

    The body's charge on the byte budget ends once it is parsed: what a text request holds afterwards is its
    tokens, which the engine's sequence and token bounds limit.
    """
    settings = service.settings
    received = await receive_body(
        body_chunks(request),
        declared_length(request),
        settings.max_payload_bytes,
        service.inflight_bytes,
        settings.body_read_timeout_s,
    )
    try:
        body = received.take()
    finally:
        received.release()
    try:
        document = json.loads(body.decode("utf-8", "surrogateescape"))
    except json.JSONDecodeError as error:
        raise InvalidInput(f"request body is not valid JSON: {error}") from None
    _refuse_invalid_text(document, "")
    try:
        return model_type.model_validate(document)
    except ValidationError as error:
        raise _describe(error) from None


def record_model(request: Request, model: str) -> None:
    """The model a request named in its body, for the audit line (a path that names it: `observed` does it)."""
    record = request_record(request.scope)
    if record is not None:
        record.model = model


class TokenTally:
    """A text request's tokens, prompt plus completion, kept in its access record as they become known.

    The audit line reports them, and the per-key tokens-per-minute limit charges them when the request ends (a
    stream: after its last event). A stream's count grows with every piece sent, so a client that goes away
    mid-stream is charged what it was sent. Without keys and audit there is no record: this does nothing.
    """

    def __init__(self, request: Request, prompt_tokens: int) -> None:
        self._record = request_record(request.scope)
        self.prompt_tokens = prompt_tokens
        self.completed(0)

    def completed(self, completion_tokens: int) -> None:
        if self._record is not None:
            self._record.tokens = self.prompt_tokens + completion_tokens


def _refuse_invalid_text(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{where or 'request'}: text is not valid UTF-8", param=where or None) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_invalid_text(key, where)
            _refuse_invalid_text(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_invalid_text(item, f"{where}[{index}]")


def _describe(error: ValidationError) -> InvalidInput:
    problems = error.errors()
    # Of a union's failed members, the one that got furthest says most ("too short" beats "not a string").
    problem = next((item for item in problems if not item["type"].endswith("_type")), problems[0])
    where = ""
    for part in problem["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part not in _UNION_MEMBER_TAGS and "[" not in part:
            where = f"{where}.{part}" if where else part
    if problem["type"] == "extra_forbidden":
        return InvalidInput(f"Unrecognized request argument supplied: {where}", param=where)
    return InvalidInput(f"{where}: {problem['msg']}", param=where or None)
