"""KServe v1 REST endpoints: `instances` in, `predictions` out."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from fastapi import APIRouter, Request
from starlette.responses import Response

from modeldeploy_runtime.errors import InvalidInput
from modeldeploy_runtime.intake import off_loop_when_large
from modeldeploy_runtime.model.metadata import Datatype, ModelMetadata, TensorSpec
from modeldeploy_runtime.protocol.http import (
    body_chunks,
    declared_length,
    json_response,
    parse_json,
    wait_for_disconnect,
)
from modeldeploy_runtime.protocol.openapi import ERROR_RESPONSES, request_body
from modeldeploy_runtime.protocol.schemas import PredictRequest, PredictResponse, V1ModelList, V1ModelStatus
from modeldeploy_runtime.protocol.tensors import check_against_spec, tensor_from_json, tensor_to_json_data
from modeldeploy_runtime.service import InferenceService


def decode_instances(document: Any, metadata: ModelMetadata, max_batch_size: int) -> list[torch.Tensor]:
    """Stacks the instances into one batch per input, in the model's declared input order."""
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise InvalidInput("request body must be a JSON object with an 'instances' list")
    instances: list[Any] = document["instances"]
    if not instances:
        raise InvalidInput("'instances' is empty: send at least one instance")
    if len(instances) > max_batch_size:
        raise InvalidInput(f"{len(instances)} instances exceed the max batch size {max_batch_size}; split them")
    single_input = len(metadata.inputs) == 1
    columns = [instances] if single_input else [_column(instances, spec) for spec in metadata.inputs]
    return [_stack(column, spec, metadata.declared) for column, spec in zip(columns, metadata.inputs, strict=True)]


def _column(instances: list[Any], spec: TensorSpec) -> list[Any]:
    column = []
    for position, instance in enumerate(instances):
        if not isinstance(instance, dict) or spec.name not in instance:
            raise InvalidInput(
                f"instances[{position}] must be an object with a value for input '{spec.name}' "
                "(this model has several inputs)"
            )
        column.append(instance[spec.name])
    return column


def _stack(column: list[Any], spec: TensorSpec, declared: bool) -> torch.Tensor:
    what = f"input '{spec.name}'"
    datatype = spec.datatype if declared else Datatype.FP32
    shape = (len(column), *_shape_of(column[0]))
    check_against_spec(spec, datatype, shape, declared)
    return tensor_from_json(column, datatype, shape, what)


def _shape_of(value: Any) -> tuple[int, ...]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def encode_predictions(outputs: list[torch.Tensor], metadata: ModelMetadata) -> dict[str, Any]:
    rows = [tensor_to_json_data(output).reshape(tuple(output.shape)) for output in outputs]
    if len(rows) == 1:
        return {"predictions": rows[0]}
    names = [spec.name for spec in metadata.outputs]
    count = rows[0].shape[0]
    return {"predictions": [{name: row[item] for name, row in zip(names, rows, strict=True)} for item in range(count)]}


def v1_router(service: InferenceService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["KServe v1"])

    @router.get("/models", response_model=V1ModelList)
    async def list_models() -> V1ModelList:
        return V1ModelList(models=[service.name])

    @router.get("/models/{model_name}", response_model=V1ModelStatus, responses={404: ERROR_RESPONSES[404]})
    async def model_status(model_name: str) -> V1ModelStatus:
        service.metadata_model(model_name)
        return V1ModelStatus(name=model_name, ready=service.ready)

    @router.post(
        "/models/{model_name}:predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=request_body(PredictRequest),
    )
    async def predict(model_name: str, request: Request) -> Response:
        """One prediction per instance; a dict per prediction when the model has several outputs."""
        return await predict_v1(service, model_name, request)

    return router


async def predict_v1(service: InferenceService, model_name: str, request: Request) -> Response:
    """The v1 predict sequence, shared by the documented route and the ASGI fast path."""
    async with service.admit(model_name, body_chunks(request), declared_length(request)) as admitted:
        body = admitted.body.take()
        metadata = admitted.model.metadata
        inputs = await off_loop_when_large(len(body), _decode_body, body, metadata, service.settings.max_batch_size)
        del body  # the raw body goes; the decoded tensors stay
        outputs = await admitted.slot.infer(inputs, partial(wait_for_disconnect, request))
    return json_response(encode_predictions(outputs, metadata))


def _decode_body(body: bytearray, metadata: ModelMetadata, max_batch_size: int) -> list[torch.Tensor]:
    return decode_instances(parse_json(body, "request body"), metadata, max_batch_size)
