"""A loaded model ready to serve: runs one batch of tensors and returns the declared outputs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modeldeploy_runtime.errors import InferenceFailed, InvalidInput, ServingError, client_safe
from modeldeploy_runtime.model.metadata import ModelMetadata

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServableModel:
    name: str
    platform: str
    metadata: ModelMetadata
    device: torch.device
    # Floating inputs are cast to this dtype on the way in; floating outputs back to the declared datatype.
    compute_dtype: torch.dtype
    forward: Callable[..., Any]

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Runs one batch. Blocking: the batching engine calls it from its inference thread."""
        with torch.inference_mode():
            model_inputs = [self._to_model(tensor) for tensor in inputs]
            try:
                result = self.forward(*model_inputs)
            except Exception as error:
                raise self._client_error(error) from error
            return [self._to_client(index, tensor) for index, tensor in enumerate(self._flatten(result))]

    def _client_error(self, error: Exception) -> ServingError:
        """What the client learns when the model raises: the last line of its message, never the traceback.

        A model without declared metadata had its input checked by nobody else: the model refusing it is the
        client's error (a wrong shape, say). A model with declared metadata got an input that fits the
        declaration, so its failure is the server's.
        """
        _log.info("model %s raised on a request", self.name, exc_info=error)
        reason = client_safe(str(error)) or error.__class__.__name__
        if not self.metadata.declared:
            return InvalidInput(f"the model rejected the input: {reason}")
        return InferenceFailed(f"the model failed on this input: {reason}")

    def warm_up(self, batch_sizes: Sequence[int]) -> bool:
        """Runs zero inputs of the declared shapes; False when the shapes are not declared well enough."""
        if not self.metadata.input_shapes_declared:
            _log.warning(
                "model %s: input shapes are not fully declared, skipping warm-up; "
                "the first requests pay for lazy initialisation",
                self.name,
            )
            return False
        # A model without a dynamic batch dimension only ever sees its declared shapes.
        sizes: Sequence[int | None] = batch_sizes if self.metadata.batchable else [None]
        for size in sizes:
            zeros = [
                torch.zeros(_warm_up_shape(spec.shape or (), size), dtype=spec.datatype.torch_dtype, device="cpu")
                for spec in self.metadata.inputs
            ]
            # Twice: TorchScript's profiling executor optimises the graph on the second call.
            for _ in range(2):
                self.run(zeros)
        return True

    def _to_model(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.is_floating_point() and tensor.dtype != self.compute_dtype:
            return tensor.to(self.device, self.compute_dtype, non_blocking=True)
        return tensor.to(self.device, non_blocking=True)

    def _to_client(self, index: int, tensor: torch.Tensor) -> torch.Tensor:
        declared = self.metadata.outputs[index].datatype.torch_dtype
        if tensor.is_floating_point() and declared.is_floating_point and tensor.dtype != declared:
            tensor = tensor.to(declared)
        return tensor.cpu()

    def _flatten(self, result: Any) -> list[torch.Tensor]:
        if isinstance(result, torch.Tensor):
            outputs = [result]
        elif isinstance(result, (tuple, list)) and all(isinstance(item, torch.Tensor) for item in result):
            outputs = list(result)
        elif isinstance(result, dict) and all(isinstance(item, torch.Tensor) for item in result.values()):
            missing = [spec.name for spec in self.metadata.outputs if spec.name not in result]
            if missing:
                raise InferenceFailed(f"model returned a dict without the declared outputs {missing}")
            outputs = [result[spec.name] for spec in self.metadata.outputs]
        else:
            raise InferenceFailed(
                f"model returned {type(result).__name__}; expected a tensor, a tuple/list or a dict of tensors"
            )
        if len(outputs) != len(self.metadata.outputs):
            raise InferenceFailed(f"model returned {len(outputs)} outputs but declares {len(self.metadata.outputs)}")
        return outputs


def _warm_up_shape(declared: tuple[int, ...], batch_size: int | None) -> tuple[int, ...]:
    return declared if batch_size is None else (batch_size, *declared[1:])
