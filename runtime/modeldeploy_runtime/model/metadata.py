"""Declared model metadata: input/output names, Open Inference Protocol datatypes and shapes.

TorchScript files carry it as JSON in the archive's extra files (`METADATA_EXTRA_FILE`), a sidecar file
`<model file>.metadata.json` overrides it; an ExportedProgram's own signature is used otherwise.
Shapes include the batch dimension first; -1 marks a dynamic dimension.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modeldeploy_runtime.errors import ModelLoadError

METADATA_EXTRA_FILE = "modeldeploy-metadata.json"
SIDECAR_SUFFIX = ".metadata.json"
DYNAMIC = -1


class Datatype(enum.StrEnum):
    """Open Inference Protocol tensor datatypes this runtime can carry (BYTES is not a tensor type here)."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BF16 = "BF16"

    @property
    def torch_dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self]

    @property
    def numpy_dtype(self) -> np.dtype | None:
        """Little-endian numpy dtype; None for BF16, which numpy lacks (torch handles it)."""
        return _NUMPY_DTYPES.get(self)

    @property
    def itemsize(self) -> int:
        return self.torch_dtype.itemsize

    @classmethod
    def of_torch(cls, dtype: torch.dtype) -> Datatype:
        for datatype, torch_dtype in _TORCH_DTYPES.items():
            if torch_dtype == dtype:
                return datatype
        raise ModelLoadError(f"tensor dtype {dtype} has no Open Inference Protocol datatype")


_TORCH_DTYPES: dict[Datatype, torch.dtype] = {
    Datatype.BOOL: torch.bool,
    Datatype.UINT8: torch.uint8,
    Datatype.INT8: torch.int8,
    Datatype.INT16: torch.int16,
    Datatype.INT32: torch.int32,
    Datatype.INT64: torch.int64,
    Datatype.FP16: torch.float16,
    Datatype.FP32: torch.float32,
    Datatype.FP64: torch.float64,
    Datatype.BF16: torch.bfloat16,
}
_NUMPY_DTYPES: dict[Datatype, np.dtype] = {
    Datatype.BOOL: np.dtype("?"),
    Datatype.UINT8: np.dtype("u1"),
    Datatype.INT8: np.dtype("i1"),
    Datatype.INT16: np.dtype("<i2"),
    Datatype.INT32: np.dtype("<i4"),
    Datatype.INT64: np.dtype("<i8"),
    Datatype.FP16: np.dtype("<f2"),
    Datatype.FP32: np.dtype("<f4"),
    Datatype.FP64: np.dtype("<f8"),
}


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1)
    datatype: Datatype
    # None: the rank is unknown (a TorchScript file without declared metadata); shown as [-1].
    shape: tuple[int, ...] | None = None

    @field_validator("shape")
    @classmethod
    def _dims_are_positive_or_dynamic(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is not None and any(dim < 1 and dim != DYNAMIC for dim in shape):
            raise ValueError(f"every dimension must be a positive size or {DYNAMIC} (dynamic), got {shape}")
        return shape

    @property
    def protocol_shape(self) -> list[int]:
        return [DYNAMIC] if self.shape is None else list(self.shape)

    @property
    def has_dynamic_batch(self) -> bool:
        return self.shape is None or (len(self.shape) > 0 and self.shape[0] == DYNAMIC)

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            want in (DYNAMIC, got) for want, got in zip(self.shape, shape, strict=True)
        )


class ModelMetadata(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: tuple[TensorSpec, ...] = Field(..., min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(..., min_length=1)
    # False when derived from a bare TorchScript signature: the datatypes are guesses, so requests may
    # carry any datatype and the response reports what the model returned.
    declared: bool = True

    @model_validator(mode="after")
    def _names_are_unique(self) -> ModelMetadata:
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [spec.name for spec in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {names}")
        return self

    @property
    def batchable(self) -> bool:
        """Requests can be stacked along dim 0 only if every tensor declares a dynamic first dimension."""
        return all(spec.has_dynamic_batch for spec in (*self.inputs, *self.outputs))

    @property
    def input_shapes_declared(self) -> bool:
        """True when every input's shape is known apart from a dynamic batch dimension (warm-up needs it)."""
        return all(
            spec.shape is not None and len(spec.shape) > 0 and DYNAMIC not in spec.shape[1:] for spec in self.inputs
        )


def parse_metadata(raw: bytes | str, source: str) -> ModelMetadata:
    try:
        return ModelMetadata.model_validate_json(raw)
    except ValidationError as error:
        raise ModelLoadError(f"invalid model metadata in {source}: {error}") from error


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + SIDECAR_SUFFIX)
