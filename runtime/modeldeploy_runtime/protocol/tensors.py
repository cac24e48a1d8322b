"""Tensor conversion between the wire (JSON numbers, raw little-endian bytes) and torch.

Deliberately no pydantic here: a ResNet input is 150k numbers, so they go straight from orjson's lists
into numpy and torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from modeldeploy_runtime.errors import InvalidInput
from modeldeploy_runtime.model.metadata import Datatype, TensorSpec


def parse_datatype(value: object, what: str) -> Datatype:
    try:
        return Datatype(str(value))
    except ValueError:
        allowed = ", ".join(datatype.value for datatype in Datatype)
        raise InvalidInput(f"{what}: datatype {value!r} is not supported; allowed: {allowed}") from None


def parse_shape(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in value
    ):
        raise InvalidInput(f"{what}: shape must be a list of non-negative integers, got {value!r}")
    return tuple(value)


def check_against_spec(spec: TensorSpec, datatype: Datatype, shape: Sequence[int], declared: bool) -> None:
    what = f"input '{spec.name}'"
    if declared and datatype is not spec.datatype:
        raise InvalidInput(f"{what}: datatype {datatype.value} does not match the declared {spec.datatype.value}")
    if not spec.accepts_shape(shape):
        raise InvalidInput(
            f"{what}: shape {list(shape)} does not match the declared shape {spec.protocol_shape} (-1 = any size)"
        )


def tensor_from_json(data: Any, datatype: Datatype, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """`data` may be flat (row-major) or nested; its element count must match the shape."""
    if not isinstance(data, list):
        data = [data]
    numpy_dtype = datatype.numpy_dtype or np.dtype("<f4")
    try:
        array = np.asarray(data, dtype=numpy_dtype)
    except (ValueError, TypeError, OverflowError) as error:
        raise InvalidInput(f"{what}: data is not a (nested) list of {datatype.value} values: {error}") from None
    expected = math.prod(shape)
    if array.size != expected:
        raise InvalidInput(f"{what}: data has {array.size} elements but shape {list(shape)} needs {expected}")
    tensor = torch.from_numpy(array.reshape(shape))
    return tensor.to(torch.bfloat16) if datatype is Datatype.BF16 else tensor


def tensor_from_bytes(
    buffer: bytearray, offset: int, size: int, datatype: Datatype, shape: tuple[int, ...], what: str
) -> torch.Tensor:
    expected = math.prod(shape) * datatype.itemsize
    if size != expected:
        raise InvalidInput(
            f"{what}: binary_data_size is {size} bytes but shape {list(shape)} of {datatype.value} needs {expected}"
        )
    if expected == 0:
        return torch.empty(shape, dtype=datatype.torch_dtype)
    # Shares memory with the request body: no copy on the hot path.
    flat = torch.frombuffer(buffer, dtype=datatype.torch_dtype, count=math.prod(shape), offset=offset)
    return flat.reshape(shape)


def tensor_to_json_data(tensor: torch.Tensor) -> np.ndarray:
    """Flat row-major numpy array; orjson serialises it natively. numpy has no bfloat16, so widen it."""
    if tensor.dtype is torch.bfloat16:
        tensor = tensor.float()
    return tensor.contiguous().numpy().reshape(-1)


def tensor_to_bytes(tensor: torch.Tensor) -> bytes:
    contiguous = tensor.contiguous()
    if contiguous.dtype is torch.bfloat16:
        contiguous = contiguous.view(torch.int16)
    return contiguous.numpy().tobytes()


def datatype_of(tensor: torch.Tensor) -> Datatype:
    return Datatype.of_torch(tensor.dtype)
