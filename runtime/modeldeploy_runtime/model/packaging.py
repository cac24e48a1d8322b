"""Writing a model file this runtime serves with declared metadata (used by examples, tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import torch

from modeldeploy_runtime.model.metadata import METADATA_EXTRA_FILE, ModelMetadata


def save_torchscript(module: torch.nn.Module, path: Path, metadata: ModelMetadata) -> Path:
    """Scripts `module` in eval mode and stores `metadata` inside the archive."""
    scripted = torch.jit.script(module.eval())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path), _extra_files={METADATA_EXTRA_FILE: metadata.model_dump_json()})
    return path
