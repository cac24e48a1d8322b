"""Real torch models the runtime tests serve: each builder writes a file and returns the eager module."""

from __future__ import annotations

from pathlib import Path

import torch
from modeldeploy_runtime.model.metadata import Datatype, ModelMetadata, TensorSpec
from modeldeploy_runtime.model.packaging import save_torchscript

MLP_FEATURES = 16
MLP_CLASSES = 4
CNN_SHAPE = (3, 16, 16)
CNN_CLASSES = 5
PAIR_WIDTH = 8


def _fp32(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name=name, datatype=Datatype.FP32, shape=(-1, *shape))


class Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(MLP_FEATURES, 32), torch.nn.ReLU(), torch.nn.Linear(32, MLP_CLASSES)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class SmallCnn(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(16, CNN_CLASSES)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).flatten(1))


class TwoInputs(torch.nn.Module):
    """Two inputs of different dtypes and two outputs: tests name matching and multi-tensor batching."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = torch.nn.Linear(PAIR_WIDTH, PAIR_WIDTH)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed = self.mix(left) * right.to(left.dtype)
        return mixed, mixed.sum(dim=1).round().to(torch.int64)


class Slow(torch.nn.Module):
    """Burns CPU for a while per call (repeated matmuls) so tests can hold requests in flight."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.weight = torch.nn.Parameter(torch.eye(256) * 0.5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        state = torch.ones(256, 256)
        for _ in range(self.rounds):
            state = torch.tanh(state @ self.weight)
        return features * 2.0 + state[0, 0]


def seeded(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return module.eval()


def build_mlp(path: Path) -> torch.nn.Module:
    model = seeded(Mlp())
    save_torchscript(
        model,
        path,
        ModelMetadata(inputs=(_fp32("features", MLP_FEATURES),), outputs=(_fp32("logits", MLP_CLASSES),)),
    )
    return model


def build_cnn(path: Path) -> torch.nn.Module:
    model = seeded(SmallCnn())
    save_torchscript(
        model, path, ModelMetadata(inputs=(_fp32("image", *CNN_SHAPE),), outputs=(_fp32("scores", CNN_CLASSES),))
    )
    return model


def build_two_inputs(path: Path) -> torch.nn.Module:
    model = seeded(TwoInputs())
    metadata = ModelMetadata(
        inputs=(
            _fp32("left", PAIR_WIDTH),
            TensorSpec(name="right", datatype=Datatype.INT32, shape=(-1, PAIR_WIDTH)),
        ),
        outputs=(_fp32("mixed", PAIR_WIDTH), TensorSpec(name="total", datatype=Datatype.INT64, shape=(-1,))),
    )
    save_torchscript(model, path, metadata)
    return model


def build_exported_mlp(path: Path) -> torch.nn.Module:
    model = seeded(Mlp())
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.zeros(2, MLP_FEATURES),), dynamic_shapes={"features": {0: batch}})
    torch.export.save(program, str(path))
    return model


def build_slow(path: Path, rounds: int, width: int = 4) -> torch.nn.Module:
    model = Slow(rounds).eval()
    metadata = ModelMetadata(inputs=(_fp32("features", width),), outputs=(_fp32("doubled", width),))
    save_torchscript(model, path, metadata)
    return model


def build_undeclared_mlp(path: Path) -> torch.nn.Module:
    """A TorchScript file without metadata: served with names from forward() and dynamic shapes."""
    model = seeded(Mlp())
    torch.jit.save(torch.jit.script(model), str(path))
    return model
