"""Loads a TorchScript or ExportedProgram file onto the chosen device and dtype, with its metadata."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from modeldeploy_runtime.errors import ModelLoadError
from modeldeploy_runtime.model.archive import check_exported_program_archive, detect_format
from modeldeploy_runtime.model.metadata import (
    DYNAMIC,
    METADATA_EXTRA_FILE,
    Datatype,
    ModelMetadata,
    TensorSpec,
    parse_metadata,
    sidecar_path,
)
from modeldeploy_runtime.model.servable import ServableModel
from modeldeploy_runtime.settings import DtypeChoice, ModelFormat

_log = logging.getLogger(__name__)

COMPUTE_DTYPES = {
    DtypeChoice.FLOAT32: torch.float32,
    DtypeChoice.FLOAT16: torch.float16,
    DtypeChoice.BFLOAT16: torch.bfloat16,
}
# Platform names as KServe/Triton clients know them from the model metadata endpoint.
_PLATFORMS = {
    ModelFormat.TORCHSCRIPT: "pytorch_torchscript",
    ModelFormat.EXPORTED_PROGRAM: "pytorch_exported_program",
}


def load_model(
    name: str,
    path: Path,
    model_format: ModelFormat | None,
    device: torch.device,
    dtype_choice: DtypeChoice,
) -> ServableModel:
    """Raises ModelLoadError with a reason a person can act on."""
    resolved_format = model_format or detect_format(path)
    compute_dtype = COMPUTE_DTYPES[dtype_choice]
    if compute_dtype is torch.float16 and device.type == "cpu":
        _log.warning("float16 on the CPU is slow for most operators; bfloat16 or float32 is usually faster")
    try:
        if resolved_format is ModelFormat.TORCHSCRIPT:
            forward, metadata = _load_torchscript(path, device, compute_dtype)
        else:
            forward, metadata = _load_exported_program(path, device, compute_dtype)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(
            f"cannot load {path} as {resolved_format.value}: {error.__class__.__name__}: {error}"
        ) from error
    return ServableModel(
        name=name,
        platform=_PLATFORMS[resolved_format],
        metadata=metadata,
        device=device,
        compute_dtype=compute_dtype,
        forward=forward,
    )


def _load_torchscript(
    path: Path, device: torch.device, compute_dtype: torch.dtype
) -> tuple[Callable[..., Any], ModelMetadata]:
    extra_files = {METADATA_EXTRA_FILE: b""}
    module = torch.jit.load(str(path), map_location=device, _extra_files=extra_files)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        metadata = parse_metadata(sidecar.read_bytes(), str(sidecar))
    elif extra_files[METADATA_EXTRA_FILE]:
        metadata = parse_metadata(extra_files[METADATA_EXTRA_FILE], f"{path}:{METADATA_EXTRA_FILE}")
    else:
        metadata = _torchscript_signature(module)
        _log.warning(
            "%s declares no metadata (%s in the archive or %s): serving with input names from forward(), "
            "datatype FP32 assumed and dynamic shapes",
            path,
            METADATA_EXTRA_FILE,
            sidecar.name,
        )
    module = module.to(compute_dtype).eval()
    try:
        # Freezing inlines weights and folds conv+batchnorm: a free speed-up for inference.
        module = torch.jit.freeze(module)
    except Exception as error:
        _log.info("serving %s unfrozen: torch.jit.freeze failed (%s)", path, error)
    return module, metadata


def _torchscript_signature(module: torch.jit.ScriptModule) -> ModelMetadata:
    schema = module.forward.schema  # type: ignore[attr-defined]
    inputs = tuple(TensorSpec(name=argument.name, datatype=Datatype.FP32) for argument in schema.arguments[1:])
    returned = schema.returns[0].type if schema.returns else None
    elements = getattr(returned, "elements", None)
    output_count = len(elements()) if callable(elements) else 1
    outputs = tuple(TensorSpec(name=f"output__{index}", datatype=Datatype.FP32) for index in range(output_count))
    return ModelMetadata(inputs=inputs, outputs=outputs, declared=False)


def _load_exported_program(
    path: Path, device: torch.device, compute_dtype: torch.dtype
) -> tuple[Callable[..., Any], ModelMetadata]:
    check_exported_program_archive(path)
    program = torch.export.load(str(path))
    metadata = _exported_program_signature(program)
    module = program.module().to(device)
    if compute_dtype is not torch.float32:
        module = module.to(compute_dtype)
    return module, metadata


def _exported_program_signature(program: torch.export.ExportedProgram) -> ModelMetadata:
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    output_values = output_node.args[0]
    output_specs = program.graph_signature.output_specs
    inputs = tuple(
        _spec_from_value(name, placeholders[name].meta.get("val"), path_kind="input")
        for name in program.graph_signature.user_inputs
    )
    outputs = tuple(
        _spec_from_value(spec.arg.name, node.meta.get("val"), path_kind="output")
        for spec, node in zip(output_specs, output_values, strict=True)
        if spec.kind == torch.export.graph_signature.OutputKind.USER_OUTPUT
    )
    return ModelMetadata(inputs=inputs, outputs=outputs)


def _spec_from_value(name: str, value: object, path_kind: str) -> TensorSpec:
    if not isinstance(value, torch.Tensor):
        raise ModelLoadError(f"exported {path_kind} {name} is not a tensor ({type(value).__name__})")
    shape = tuple(dim if isinstance(dim, int) else DYNAMIC for dim in value.shape)
    return TensorSpec(name=name, datatype=Datatype.of_torch(value.dtype), shape=shape)
