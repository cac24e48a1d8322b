"""Pydantic models of the protocol documents, for the OpenAPI document and the small JSON replies.

Inference bodies are parsed by hand (orjson + numpy) for speed; these models describe them exactly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modeldeploy_runtime.model.metadata import Datatype

# Nested lists of numbers or booleans, or a flat row-major list.
TensorData = list[Any]
Parameters = dict[str, Any]


class ErrorResponse(BaseModel):
    error: str = Field(..., description="What went wrong; names the offending tensor or setting.")


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool
    reason: str = Field(..., description="Why the server is (not) ready: loading, failed to load, draining.")


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(..., description="Batch dimension first; -1 marks a dynamic dimension.")


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool
    reason: str


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    shape: list[int] = Field(..., json_schema_extra={"items": {"type": "integer", "minimum": 0}})
    datatype: Datatype
    parameters: Parameters | None = Field(
        None, description="`binary_data_size`: bytes of this tensor in the binary part of the body."
    )
    data: TensorData | None = Field(None, description="Row-major values, flat or nested; omit for binary.")


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    parameters: Parameters | None = Field(None, description="`binary_data: true` returns it as raw bytes.")


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    parameters: Parameters | None = Field(None, description="`binary_data_output: true`: all outputs binary.")
    inputs: list[RequestInput] = Field(..., min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: Parameters | None = None
    data: TensorData | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    instances: list[Any] = Field(
        ...,
        min_length=1,
        description="One item per instance, without the batch dimension; a dict of input name to value "
        "for a model with several inputs.",
    )


class PredictResponse(BaseModel):
    predictions: list[Any]


class V1ModelStatus(BaseModel):
    name: str
    ready: bool


class V1ModelList(BaseModel):
    models: list[str]
