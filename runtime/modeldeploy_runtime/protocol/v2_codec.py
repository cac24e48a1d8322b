"""Open Inference Protocol (KServe v2) request decoding and response encoding, JSON and binary tensors.

Binary tensor data extension: the `Inference-Header-Content-Length` header gives the length of the JSON
header at the start of the body; the raw little-endian, row-major bytes of each binary input follow in
the order of the inputs, each input naming its length in `parameters.binary_data_size`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import torch

from modeldeploy_runtime.errors import InvalidInput
from modeldeploy_runtime.model.metadata import ModelMetadata
from modeldeploy_runtime.protocol.http import parse_byte_count, parse_json
from modeldeploy_runtime.protocol.tensors import (
    check_against_spec,
    datatype_of,
    parse_datatype,
    parse_shape,
    tensor_from_bytes,
    tensor_from_json,
    tensor_to_bytes,
    tensor_to_json_data,
)

HEADER_LENGTH = "inference-header-content-length"
BINARY_EXTENSION = "binary_tensor_data"


@dataclass(frozen=True)
class DecodedRequest:
    id: str | None
    # In the model's declared input order.
    inputs: list[torch.Tensor]
    # Declared output index -> send as binary; only the outputs the client asked for (all by default).
    outputs: dict[int, bool]


def decode_request(
    body: bytes | bytearray, header_length: str | None, metadata: ModelMetadata, max_batch_size: int
) -> DecodedRequest:
    binary = bytearray()
    if header_length is None:
        document = parse_json(body, "request body")
    else:
        json_length = _parse_header_length(header_length, len(body))
        view = memoryview(body)
        document = parse_json(view[:json_length], "JSON header of the request")
        binary = bytearray(view[json_length:])
    if not isinstance(document, dict):
        raise InvalidInput("request body must be a JSON object with 'inputs'")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    inputs = _decode_inputs(document.get("inputs"), binary, metadata)
    _check_batch(inputs, metadata, max_batch_size)
    return DecodedRequest(id=request_id, inputs=inputs, outputs=_requested_outputs(document, metadata))


def _parse_header_length(value: str, body_length: int) -> int:
    length = parse_byte_count(value)
    if length is None or length > body_length:
        raise InvalidInput(
            f"Inference-Header-Content-Length {value!r} must be a byte count within the body ({body_length})"
        )
    return length


def _decode_inputs(raw_inputs: Any, binary: bytearray, metadata: ModelMetadata) -> list[torch.Tensor]:
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    specs = {spec.name: index for index, spec in enumerate(metadata.inputs)}
    decoded: dict[int, torch.Tensor] = {}
    offset = 0
    for position, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput(f"inputs[{position}] must be an object with a string 'name'")
        name = raw["name"]
        what = f"input '{name}'"
        if name not in specs:
            raise InvalidInput(f"{what} is not an input of this model; inputs are {list(specs)}")
        if specs[name] in decoded:
            raise InvalidInput(f"{what} is given twice")
        spec = metadata.inputs[specs[name]]
        datatype = parse_datatype(raw.get("datatype"), what)
        shape = parse_shape(raw.get("shape"), what)
        check_against_spec(spec, datatype, shape, metadata.declared)
        binary_size = _binary_size(raw.get("parameters"), what)
        if binary_size is None:
            if "data" not in raw:
                raise InvalidInput(f"{what} has neither 'data' nor parameters.binary_data_size")
            tensor = tensor_from_json(raw["data"], datatype, shape, what)
        else:
            if offset + binary_size > len(binary):
                raise InvalidInput(
                    f"{what}: binary_data_size {binary_size} runs past the end of the binary part of the body"
                )
            tensor = tensor_from_bytes(binary, offset, binary_size, datatype, shape, what)
            offset += binary_size
        decoded[specs[name]] = tensor
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes after the last binary input; check binary_data_size"
        )
    missing = [spec.name for index, spec in enumerate(metadata.inputs) if index not in decoded]
    if missing:
        raise InvalidInput(f"missing inputs {missing}; the model needs {list(specs)}")
    return [decoded[index] for index in range(len(metadata.inputs))]


def _binary_size(parameters: Any, what: str) -> int | None:
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{what}: 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"{what}: binary_data_size must be a non-negative integer, got {size!r}")
    return size


def _check_batch(inputs: Sequence[torch.Tensor], metadata: ModelMetadata, max_batch_size: int) -> None:
    if not metadata.batchable:
        return
    for spec, tensor in zip(metadata.inputs, inputs, strict=True):
        if tensor.dim() == 0:
            raise InvalidInput(f"input '{spec.name}' needs a batch dimension first")
    sizes = {tensor.shape[0] for tensor in inputs}
    if len(sizes) > 1:
        raise InvalidInput(f"inputs disagree on the batch dimension (first dimension): {sorted(sizes)}")
    size = sizes.pop()
    if size > max_batch_size:
        raise InvalidInput(f"batch dimension {size} exceeds the max batch size {max_batch_size}; split it")
    if size == 0:
        raise InvalidInput("batch dimension is 0: send at least one item")


def _requested_outputs(document: dict[str, Any], metadata: ModelMetadata) -> dict[int, bool]:
    parameters = document.get("parameters")
    all_binary = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    raw_outputs = document.get("outputs")
    if raw_outputs is None:
        return dict.fromkeys(range(len(metadata.outputs)), all_binary)
    if not isinstance(raw_outputs, list):
        raise InvalidInput("'outputs' must be a list of {name, parameters}")
    names = {spec.name: index for index, spec in enumerate(metadata.outputs)}
    requested: dict[int, bool] = {}
    for position, raw in enumerate(raw_outputs):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput(f"outputs[{position}] must be an object with a string 'name'")
        if raw["name"] not in names:
            raise InvalidInput(f"output '{raw['name']}' is not an output of this model; outputs are {list(names)}")
        output_parameters = raw.get("parameters")
        binary = all_binary
        if isinstance(output_parameters, dict) and "binary_data" in output_parameters:
            binary = output_parameters["binary_data"] is True
        requested[names[raw["name"]]] = binary
    return requested


def encode_response(
    model_name: str, request: DecodedRequest, outputs: Sequence[torch.Tensor], metadata: ModelMetadata
) -> tuple[bytes, int | None]:
    """The body and, when any output is binary, the length of its JSON header."""
    documents: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for index, binary in request.outputs.items():
        tensor = outputs[index]
        document: dict[str, Any] = {
            "name": metadata.outputs[index].name,
            "datatype": datatype_of(tensor).value,
            "shape": list(tensor.shape),
        }
        if binary:
            blob = tensor_to_bytes(tensor)
            document["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            document["data"] = tensor_to_json_data(tensor)
        documents.append(document)
    response: dict[str, Any] = {"model_name": model_name, "outputs": documents}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
